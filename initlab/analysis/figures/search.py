"""The init-scale search (hydra/sweeper=optuna_search): what the sampler tried and what it found."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from initlab.analysis import search as optuna_search
from initlab.analysis.figures.base import WIDTH, Figure, NothingToDraw, integer_ticks

SECTION = "Init-scale search"
log = logging.getLogger(__name__)
DIVERGED = {"marker": "x", "color": "tab:red", "s": 40, "linewidths": 1.5, "zorder": 3}


class SearchFigures:
    # --- optuna search ------------------------------------------------------------------------
    def search(self) -> list[Figure]:
        """One figure per Optuna search that a kept run belongs to, over all its trials whatever the
        filters kept (initlab.analysis.search.trials): each trial's objective against every searched
        parameter (coloured by trial number), and the best value so far against the trial number."""
        trials = self.trials
        return [self._search_figure(part["search"].iloc[0], part.reset_index(drop=True))
                for _, part in trials.groupby("folder", sort=False)
                if (part["in_search"] & part["kept"]).any()]

    def _search_figure(self, name: str, folder: pd.DataFrame) -> Figure:
        """``folder``: one sweep folder's trial rows, those of earlier searches into it included (not drawn)."""
        trials = folder[folder["in_search"]].reset_index(drop=True)
        metric, direction = trials["objective"].iloc[0], trials["direction"].iloc[0]
        if trials["objective"].nunique() > 1:
            raise NothingToDraw(f"search {name}: its trials return different objectives")
        params = optuna_search.searched(trials)
        rows = [params[i:i + 2] for i in range(0, len(params), 2)]  # two parameters a row, the best below
        mosaic = [row + ["."] * (2 - len(row)) for row in rows] + [["best", "best"]]
        fig, axes = plt.subplot_mosaic(mosaic, figsize=(WIDTH, 2.8 * len(mosaic)), layout="constrained",
                                       empty_sentinel=".")
        norm = plt.Normalize(trials["trial"].min(), max(trials["trial"].max(), trials["trial"].min() + 1))
        ok = ~trials["diverged"] & np.isfinite(trials["value"])
        for param in params:
            ax = axes[param]
            points = ax.scatter(trials.loc[ok, param], trials.loc[ok, "value"], c=trials.loc[ok, "trial"],
                                cmap="viridis", norm=norm, s=28, edgecolors="black", linewidths=0.4, zorder=2)
            self._search_diverged(ax, trials[~ok], param)
            if optuna_search.log_scaled(trials[param]):
                ax.set_xscale("log")
                self._plain_log_ticks(ax.xaxis)
            ax.set(xlabel=param, ylabel=metric, title=f"{metric} against {param}")
        if params:
            bar = fig.colorbar(points, ax=[axes[p] for p in params], label="trial", shrink=0.9)
            bar.locator = integer_ticks()
            bar.update_ticks()
        ax = axes["best"]
        ax.scatter(trials.loc[ok, "trial"], trials.loc[ok, "value"], c=trials.loc[ok, "trial"], cmap="viridis",
                   norm=norm, s=22, edgecolors="black", linewidths=0.4, zorder=2)
        self._search_diverged(ax, trials[~ok], "trial")
        finite = np.isfinite(trials["best_so_far"])
        ax.step(trials.loc[finite, "trial"], trials.loc[finite, "best_so_far"], where="post", color="black",
                label="best so far")
        top = optuna_search.best(trials)
        if np.isfinite(top["value"]):
            ax.scatter([top["trial"]], [top["value"]], marker="*", s=160, color="gold", edgecolors="black",
                       zorder=4, label=f"best: trial {top['trial']}")
        ax.xaxis.set_major_locator(integer_ticks())
        ax.set(xlabel="trial", ylabel=metric, title=f"{metric} per trial and best so far ({direction})")
        handles, labels = ax.get_legend_handles_labels()
        if (~ok).any():
            handles.append(Line2D([], [], linestyle="", marker="x", color="tab:red"))
            labels.append("diverged (worst value)")
        ax.legend(handles, labels, loc="best", frameon=False, fontsize="small")
        if metric.endswith("_acc"):
            for a in axes.values():
                a.set_ylim(-0.03, 1.03)
        fig.suptitle(f"Optuna search {name}: {metric}, {len(trials)} trials")
        setting = ", ".join(f"{p}={optuna_search.fmt(float(top[p]))}" for p in params)
        diverged = int(trials["diverged"].sum())
        worst = "accuracy 0" if metric.endswith("_acc") else "loss +inf, drawn at the top edge"
        asked = int(trials["asked"].iloc[0])
        repeats = (f" ({asked - len(trials)} more trial(s) of the {asked} asked repeated earlier values: their jobs "
                   f"were finished already, so they count once, at the first)" if asked > len(trials) else "")
        others = folder[~folder["in_search"]]
        earlier = ""
        if len(others):
            earlier = (f"; {len(others)} job folder(s) here are trials of earlier searches into this folder (not in "
                       f"the latest sweep's .progress/ ledger), not drawn here")
            log.warning("search %s: %d job folder(s) are trials of earlier searches into this folder; the search "
                        "figure draws the latest search only", name, len(others))
            if others["kept"].any():
                drawn = optuna_search.best(others[others["kept"]])["job"]
                earlier += f"; the other figures also show the best of them, job {drawn}"
        kept = trials[trials["kept"]]
        if len(kept) == len(trials):
            shown = "the other figures show this trial (analyze.py PATH KEY=VALUE for another)"
        else:
            numbers = ", ".join(map(str, kept["trial"]))
            shown = (f"the filters kept {len(kept)} of its {len(trials)} trials (trial(s) {numbers}): the other "
                     f"figures show trial {optuna_search.best(kept)['trial']}, the best of those")
        caption = (f"Optuna search {name}: the final {metric} of each of {len(trials)} trials{repeats} "
                   + (f"against {' and '.join(params)} (colour: trial number), " if params else "")
                   + f"and the best so far ({direction}d) against the trial number"
                   + (f"; {diverged} diverged trial(s) count as the worst value ({worst}), marked x"
                      if diverged else "")
                   + f"{earlier}. Best trial: {top['trial']}" + (f" ({setting})" if setting else "")
                   + f", {metric} {optuna_search.fmt(float(top['value']))}, job {top['job']}; {shown}.")
        return self._save(fig, f"search_{name}", caption, SECTION)

    @staticmethod
    def _search_diverged(ax: plt.Axes, rows: pd.DataFrame, x: str) -> None:
        """Diverged trials at their worst value: accuracy 0 in data, an infinite loss at the top edge."""
        if rows.empty:
            return
        finite = np.isfinite(rows["value"])
        if finite.any():
            ax.scatter(rows.loc[finite, x], rows.loc[finite, "value"], **DIVERGED)
        if (~finite).any():
            xs = rows.loc[~finite, x].to_numpy(dtype=float)
            ax.scatter(xs, np.ones(len(xs)), transform=ax.get_xaxis_transform(), clip_on=False, **DIVERGED)
            ax.update_datalim(np.column_stack([xs, np.zeros(len(xs))]), updatex=True, updatey=False)
            ax.autoscale_view()  # the x axis reaches them too (axes-unit y updates no limits)
