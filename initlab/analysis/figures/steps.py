"""Per-step records (steps.csv, written when log_every_steps > 0): training loss and lr per
optimizer step, and each layer's weight-gradient norm per step. Nothing is drawn without them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from initlab.analysis.figures.base import WIDTH, Figure, integer_ticks


def geometric_mean(values: pd.Series) -> float:
    """exp(mean(log v)) over the positive finite values; NaN when there is none."""
    v = values[(values > 0) & np.isfinite(values)]
    return float(np.exp(np.log(v).mean())) if len(v) else float("nan")


def step_series(steps: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, logged step): steps.csv repeats loss and lr on each layer's row."""
    return steps.drop_duplicates(["job", "step"])[["job", "activation", "init", "depth", "step", "epoch", "loss", "lr"]]


class StepFigures:
    def step_records(self) -> list[Figure]:
        """Per detail depth: loss (log) and lr per logged step, a column per activation, a line per
        init (geometric mean of the loss, mean of the lr over seeds); and the weight-gradient norm
        of each weighted layer per step, a panel per (activation, init), a colour per layer from
        first (light) to last (dark), geometric mean over seeds."""
        if self.steps is None:
            return []
        figures = []
        for depth in self.detail:
            data = self.steps[self.steps["depth"] == depth]
            if data.empty:
                continue
            self._check_pooling(data, ["activation", "init", "depth", "step"])
            figures.append(self._loss_and_lr(step_series(data), depth))
            figures.append(self._layer_grads(data, depth))
        return figures

    def _loss_and_lr(self, series: pd.DataFrame, depth: int) -> Figure:
        acts, inits = self._present("activation", series), self._present("init", series)
        fig, axes = plt.subplots(2, len(acts), squeeze=False, sharex=True, sharey="row",
                                 figsize=(min(WIDTH, 2.6 * len(acts) + 0.6), 3.8))
        for c, act in enumerate(acts):
            for init in inits:
                part = series[(series["activation"] == act) & (series["init"] == init)]
                if part.empty:
                    continue
                by_step = part.groupby("step")
                style = {"color": self.palette["init"][init], "label": init, "lw": 1.0}
                axes[0, c].plot(by_step["loss"].agg(geometric_mean), **style)
                axes[1, c].plot(by_step["lr"].mean(), **style)
            axes[0, c].set_title(act, fontsize=10)
            axes[0, c].set_yscale("log")
            self._plain_log_ticks(axes[0, c].yaxis)
            axes[1, c].set_xlabel("step")
            axes[1, c].xaxis.set_major_locator(integer_ticks())
        axes[0, 0].set_ylabel("train loss (batch)")
        axes[1, 0].set_ylabel("lr")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, frameon=False)
        fig.tight_layout()
        return self._save(fig, f"steps_loss_depth{depth}", (
            f"Depth {depth}: training loss of each logged optimizer step (log scale; geometric mean over seeds) and "
            f"the lr in force, one line per init, a column per activation (steps.csv)."), "Per-step records")

    def _layer_grads(self, data: pd.DataFrame, depth: int) -> Figure:
        acts, inits = self._present("activation", data), self._present("init", data)
        sites = data.drop_duplicates("site")["site"].tolist()  # steps.csv lists layers in forward order
        colors = dict(zip(sites, sns.color_palette("viridis_r" if len(sites) > 1 else "viridis", len(sites))))
        width = min(WIDTH, 2.3 * len(inits) + 0.6)
        fig, axes = plt.subplots(len(acts), len(inits), squeeze=False, sharex=True, sharey=True,
                                 figsize=(width, 1.9 * len(acts) + 0.4))
        for (r, act), (c, init) in ((a, b) for a in enumerate(acts) for b in enumerate(inits)):
            ax = axes[r, c]
            part = data[(data["activation"] == act) & (data["init"] == init)]
            for site in sites:
                line = part[part["site"] == site].groupby("step")["grad_norm"].agg(geometric_mean)
                if len(line):
                    ax.plot(line, color=colors[site], lw=0.9, label=site)
            ax.set_yscale("log")
            if r == 0:
                ax.set_title(init, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{act}\nweight grad norm", fontsize=9)
            if r == len(acts) - 1:
                ax.set_xlabel("step")
                ax.xaxis.set_major_locator(integer_ticks())
        for ax in axes.flat:
            self._plain_log_ticks(ax.yaxis)
        shown = sites if len(sites) <= 8 else [sites[0], sites[len(sites) // 2], sites[-1]]
        handles = [plt.Line2D([], [], color=colors[s], label=s) for s in shown]
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, frameon=False,
                   title=None if shown == sites else "first, middle and last of the layers")
        fig.tight_layout()
        return self._save(fig, f"steps_grad_norm_depth{depth}", (
            f"Depth {depth}: L2 norm of each layer's weight gradient per logged step (log scale; geometric mean over "
            f"seeds), a colour per layer from the first (light) to the last (dark), a panel per activation (row) "
            f"and init (column) (steps.csv)."), "Per-step records")
