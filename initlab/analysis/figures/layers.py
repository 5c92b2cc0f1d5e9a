"""Per-layer (MLP) and per-site (any model) statistics at the detail depths, and heatmaps over
layer x epoch."""

from __future__ import annotations

import textwrap
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.colors import LogNorm

from initlab.analysis.figures.base import (FLOOR, LOG_BAND, TINY, WIDTH, ZERO_LABEL, ZERO_MARKER, Figure,
                                           NothingToDraw, integer_ticks, log_floor, t95)
from initlab.analysis.figures.facets import Wrap


SITE_NAMES_UP_TO = 16  # a per-site axis names its sites when it has at most this many
WHEN = ("at init", "middle of training", "end of training")  # _detail_layers' phases, in order


def listing(parts: list[str]) -> str:
    """``parts`` as a sentence's list: "a", "a and b", "a, b and c"."""
    return " and ".join(filter(None, [", ".join(parts[:-1]), *parts[-1:]]))


def round_ticks(values: list, most: int) -> np.ndarray:
    """Indexes of ``values`` (sorted numbers: epochs, layers) to label on a heatmap axis: the first
    value and the multiples of a round step (1, 2 or 5 times a power of 10) that keeps at most
    ``most`` labels; a multiple closer to the first value than half a step is left out."""
    values = np.asarray(values, dtype=float)
    span = values[-1] - values[0]
    step = next(s for s in (m * 10 ** k for k in range(12) for m in (1, 2, 5)) if span / s <= most - 1)
    picked = [0] + [i for i, v in enumerate(values) if v % step == 0 and v - values[0] >= step / 2]
    return np.array(sorted(set(picked)))


NOT_FINITE = "0.3"  # a heatmap cell with no finite value: darker than act_std's light grey zeros


class LayerFigures:
    """MLPs draw against ``layer`` (1..depth hidden, depth + 1 the output) as they always have; any
    other model against ``index``, its sites in forward order, named on the axis when few."""

    @property
    def by_site(self) -> bool:
        """Whether the per-layer figures use the site axis (``index``): any model but the plain MLP."""
        return bool((self.runs["model_name"] != "mlp").any())

    # --- per-layer pictures at the detail depths ----------------------------------------------
    def _detail_layers(self, hidden_only: bool = True) -> pd.DataFrame:
        """Layer rows at init, mid-training (half the last trained epoch) and the end of training
        (the final model: the restored best epoch where early stopping restored one, as the tables'
        final metrics; else the last epoch) of each run at the detail depths.

        ``hidden_only``: the sites of kind hidden (each nonlinearity's input and output: an MLP's
        hidden layers, a residual net's activations), so that one line follows one kind of signal
        (a line through alternating activation and residual-sum sites zigzags between two
        scales); otherwise the output too. Residual, norm, attention and weight-only rows stay in
        layers.csv.
        """
        layers = self.layers[self.layers["depth"].isin(self.detail)]
        layers = layers[layers["kind"].isin(["hidden"] if hidden_only else ["hidden", "output"])]
        layers = layers.dropna(subset=[self._x])
        last, final = layers.groupby("job")["epoch"].transform("max"), self._final_epoch(layers)
        middle = layers[(layers["epoch"] == last // 2) & (layers["epoch"] != 0)]
        end = layers[(layers["epoch"] == final) & ((final > 0) | (final < last))]  # epochs=0: init only
        return pd.concat([layers[layers["epoch"] == 0].assign(when="at init"),
                          middle.assign(when="middle of training"), end.assign(when="end of training")])

    def _by_layer(self, data: pd.DataFrame, y: str, ylabel: str, name: str, caption: str, log: bool,
                  row: Optional[str] = None, row_labels: Optional[dict] = None, col: str = "activation",
                  col_order: Optional[list] = None, style: str = "init", most: int = 5,
                  ylim: Optional[tuple] = None) -> Figure:
        """Per-layer lines, one per init; inits that overlap (xavier, orthogonal) differ in dashes too.

        ``row_labels`` (value -> title) orders and names the rows; their titles sit on the right. More
        than ``most`` columns wrap into another block of rows (figures.facets.Wrap). On
        a log axis (``log``), exact zeros sit at the axis floor with an open triangle (ZERO_LABEL) and
        non-finite values are left out; raises NothingToDraw when nothing finite is left.
        """
        data = data.assign(**{y: data[y].replace([np.inf, -np.inf], np.nan)}).dropna(subset=[y])
        if data.empty:
            raise NothingToDraw(f"no finite {y} at depth {', '.join(map(str, self.detail))}")
        x = self._x
        self._check_pooling(data, ["activation", "init", "depth", x, *([row] if row else []),
                                   *([col] if col else []), *([style] if style != "init" else [])])
        all_zero = log and not (data[y] > 0).any()
        if all_zero:  # zero init: a linear axis shows 0 as 0
            log, caption = False, caption.replace(", log scale", "") + " Every value is exactly 0."
        floor = log_floor(data[y]) if log else 0.0
        zero = data[y] < floor if log else (data[y] == 0) & all_zero  # marked where a log axis was asked for
        if log:
            data = data.assign(**{y: data[y].clip(lower=floor)})
        col_order = col_order or self._present("activation", data)
        inits = self._present("init", data)
        style_kw = ({"style": "init", "style_order": inits, "dashes": self.dashes,
                     "markers": {i: self.markers[i] for i in inits}, "markersize": 4, "markeredgewidth": 0}
                    if style == "init"
                    else {"style": style, "style_order": [w for w in WHEN if w in set(data[style])]})
        wrap = Wrap(col_order, list(row_labels) if row else [None], most)
        width = min(3.5, max(WIDTH / wrap.per_row, 1.6))
        height = min(1.9, width)
        g = sns.relplot(wrap.place(data, col, row), kind="line", x=x, y=y, hue="init", hue_order=inits,
                        palette=self.palette["init"], **style_kw, **(LOG_BAND if log else {"errorbar": t95}),
                        **wrap.facets, height=height, aspect=width / height,
                        facet_kws={"sharey": "row" if row and wrap.blocks == 1 else True})  # one scale a measure
        if zero.any():
            zeros = data[zero.to_numpy()]

            def mark(data: pd.DataFrame, **_) -> None:
                part = data[data.index.isin(zeros.index)]
                for init, rows in part.groupby("init"):
                    plt.gca().plot(rows[x], rows[y], color=self.palette["init"][init], **ZERO_MARKER)

            g.map_dataframe(mark)
            legend = dict(g._legend_data)
            legend[ZERO_LABEL] = Line2D([], [], color="0.3", **ZERO_MARKER)
            g._legend.remove()
            g.add_legend(legend_data=legend, label_order=list(legend))
            if log:
                for ax in g.axes.flat:
                    ax.set_ylim(bottom=floor / 2)
        named, site_note = self._site_axis(g, data, wrap.blocks) if self.by_site else (False, "")
        self._legend_below(g)  # after the site names: the legend goes below them
        wrap.label(g, "site (forward order)" if self.by_site else "layer",
                   [textwrap.fill(ylabel, 16) if row else ylabel],  # stacked rows: no overlap
                   # row titles stand vertically at the right: wrapped, so they stay shorter than a panel
                   [textwrap.fill(str(v), 10) for v in row_labels.values()] if row else [])
        for ax in g.axes.flat:
            if log:
                ax.set_yscale("log")
                self._plain_log_ticks(ax.yaxis)
            if not named:
                ax.xaxis.set_major_locator(integer_ticks(5))
            self._stagger_markers(ax, data[x].nunique())
            if ylim:
                ax.set(ylim=ylim, yticks=[0, 0.5, 1])
        caption += site_note
        if zero.any() and log:
            caption += f" Open triangles: exactly 0, drawn at the axis floor ({floor:.2g})."
        elif zero.any():
            caption += " Open triangles: exactly 0."
        self._fit_panel_text(g, height)
        return self._save(g.figure, name, caption, "Signal propagation")

    @staticmethod
    def _phases(data: pd.DataFrame, y: str) -> list[str]:
        """The phases (``when``, in WHEN's order) in which ``data`` has a finite ``y``: those that
        _by_layer draws. A run that ended at epoch 1 (diverged there, or epochs=1) has no middle
        of training, one that ended at init (epochs=0, diverged at init) no end either; a caption
        that named them anyway read "mid-training (epoch : half of ...)" over empty panels."""
        finite = data.loc[np.isfinite(data[y].astype(float)), "when"]
        return [w for w in WHEN if w in set(finite)]

    @property
    def _x(self) -> str:
        return "index" if self.by_site else "layer"

    @staticmethod
    def _site_axis(g: sns.FacetGrid, data: pd.DataFrame, blocks: int) -> tuple[bool, str]:
        """Name the sites on the x axes when there are at most SITE_NAMES_UP_TO, under each of the
        grid's ``blocks`` of rows; returns whether it did and a caption sentence."""
        names = data.dropna(subset=["site"]).drop_duplicates("index").set_index("index")["site"].sort_index()
        if 0 < len(names) <= SITE_NAMES_UP_TO and data["index"].nunique() == len(names):
            for ax in g.axes.flat:
                ax.set_xticks(names.index, names.tolist(), rotation=90, fontsize="x-small")
            # room for the vertical names, so that the panels keep their height
            g.figure.set_figheight(g.figure.get_figheight() + 0.07 * max(map(len, names)) * blocks)
            return True, " The x axis names the model's measurement sites in forward order."
        return False, (" The x axis is the site index in forward order (0 = first site); layers.csv names each "
                "site (column site).")

    @staticmethod
    def _stagger_markers(ax: plt.Axes, points: int) -> None:
        """Up to six markers per line, each init's at its own layers (offset by its place), so
        coinciding lines show alternating markers instead of one hiding the other."""
        lines = [line for line in ax.lines  # drawn lines: not seaborn's empty legend proxies, not zeros
                 if line.get_marker() not in (None, "", "None", "v") and len(line.get_xdata())]
        step = max(1, min(points, max(-(-points // 6), len(lines))))  # each line its own offset
        for k, line in enumerate(lines):
            line.set_markevery((k % step, step))

    def _end_note(self, part: pd.DataFrame) -> str:
        """A caption's sentence where early stopping restored a run of ``part`` (rows of
        ``_detail_layers``) to its best epoch, whose statistics then stand for the end of training."""
        if "restored_best" not in self.runs:
            return ""
        restored = self.runs.loc[self.runs["restored_best"].eq(True), "job"]
        if not part["job"].isin(restored).any():
            return ""
        return (" The end of training is the final model, as in the tables: where early stopping restored "
                "the best epoch, that epoch's weights.")

    def act_std_vs_layer(self) -> list[Figure]:
        """Figure 3b: the signal-propagation picture, at init and after training."""
        data = self._detail_layers()
        data = data[data["when"] != "middle of training"]
        names = {"at init": "at init", "end of training": "after training"}
        figures = []
        for d in self.detail:
            part = data[data["depth"] == d]
            rows = {w: names[w] for w in self._phases(part, "act_std")}  # a row each
            where = listing([f"{v} ({p})" for v, p in zip(rows.values(), ("top", "bottom"))] if len(rows) > 1
                            else list(rows.values()))
            figures.append(self._by_layer(
                part, "act_std", "post-activation std", f"act_std_vs_layer_depth{d}",
                f"Post-activation std per hidden layer {where}, depth {d}, log scale.{self._end_note(part)}", True,
                row="when", row_labels=rows))
        return figures

    def gradients(self) -> list[Figure]:
        """Figure 4: weight-gradient norm per layer at init, mid-training and the end."""
        data = self._detail_layers(hidden_only=False)
        figures = []
        for d in self.detail:
            part = data[data["depth"] == d]
            phases = self._phases(part, "grad_norm")  # a column each
            figures.append(self._by_layer(
                part, "grad_norm", "weight-grad norm", f"grad_norm_vs_layer_depth{d}",
                "Norm of the weight gradient on the probe batch per "
                + ("activation site (its weight: the layer feeding it) and the output" if self.by_site
                   else f"layer (layer {d + 1} is the output layer)")
                + f" {self._phases_text(part, phases)}, depth {d}, log scale.{self._end_note(part)}", True,
                row="activation",
                row_labels={a: a for a in self._present("activation", part)}, col="when", col_order=phases))
        return figures

    def _phases_text(self, part: pd.DataFrame, phases: list[str]) -> str:
        """The caption's words for ``phases`` of ``part`` (_detail_layers rows of one depth): the
        middle's epochs, and how many runs have none (they ended before epoch 2)."""
        middle = part[(part["when"] == "middle of training") & np.isfinite(part["grad_norm"].astype(float))]
        epochs = ", ".join(map(str, sorted(set(middle["epoch"].astype(int)))))
        runs = self.layers[self.layers["job"].isin(part["job"])].groupby("job")["epoch"].max()  # the last epochs
        short = int((runs < 2).sum())
        without = f"; none for the {short} of {len(runs)} runs that ended before epoch 2" if short else ""
        words = {"at init": "at init",
                 "middle of training": f"mid-training (epoch {epochs}: half of each run's last epoch, rounded "
                                       f"down{without})",
                 "end of training": "the end of training"}
        return listing([words[p] for p in phases])

    def delta_at_init(self) -> list[Figure]:
        """Figure 4b: the backward signal dL/dh (rms) per layer of the untrained network."""
        data = self._detail_layers(hidden_only=False)
        data = data[data["when"] == "at init"]
        figures = []
        for d in self.detail:
            part = data[data["depth"] == d]
            figures.append(self._by_layer(
                part, "delta_rms", "rms dL/dh", f"delta_rms_at_init_depth{d}",
                f"RMS of the loss gradient with respect to each layer's pre-activations (the backward "
                f"signal) in the untrained network, depth {d}, log scale.", True, most=2))
        return figures

    def dead_and_saturated(self) -> list[Figure]:
        """Figure 9: zero entries, dead units (relu) and saturated entries (tanh, sigmoid) per layer.

        ``frac_zero`` counts (sample, unit) entries that are exactly 0 (about half for a healthy
        relu layer); ``frac_dead`` counts units that are 0 on every probe sample (dead ReLUs). Jobs
        recorded before ``frac_dead`` existed have no such row.
        """
        data = self._detail_layers()
        stats = ["frac_zero", *(["frac_dead"] if "frac_dead" in data and data["frac_dead"].notna().any() else []),
                 "frac_saturated"]
        data = data[data["when"] != "middle of training"].melt(
            id_vars=["activation", "init", "depth", "layer", "index", "site", "when", "job"], value_vars=stats, var_name="stat")
        rows = {"frac_zero": "zero entries", "frac_dead": "dead units", "frac_saturated": "saturated entries"}
        rows = {k: v for k, v in rows.items() if k in stats}
        what = ("the fraction of entries (probe sample x unit) exactly 0 (frac_zero; about half in a healthy "
                "relu layer), " + ("the fraction of units 0 on every probe sample (frac_dead: dead units), "
                                   if "frac_dead" in stats else "")
                + "and the fraction of entries saturated (frac_saturated: |tanh| > 0.99, sigmoid < 0.01 or > 0.99)")
        figures = []
        names = {"at init": "at init", "end of training": "after training"}
        for d in self.detail:
            part = data[data["depth"] == d].dropna(subset=["value"])
            phases = [names[w] for w in self._phases(part, "value")]  # solid, then dashed
            where = listing([f"{v} ({s})" for v, s in zip(phases, ("solid", "dashed"))] if len(phases) > 1
                            else phases)
            fig = self._by_layer(
                part, "value", "fraction", f"dead_saturated_vs_layer_depth{d}",
                f"Per hidden layer, one row each: {what}; {where}, depth {d}." + self._end_note(part),
                False, row="stat", row_labels=rows, style="when", ylim=(-0.03, 1.03))
            figures.append(fig)
        return figures

    def heatmaps(self) -> list[Figure]:
        """Figure 3: act_std and act_mean over layer x epoch, one panel per init."""
        layers = self.layers[self.layers["depth"].isin(self.detail)]
        layers = layers[layers["kind"] == "hidden"]
        figures = []
        for stat in ("act_std", "act_mean"):
            for (act, d), part in layers.groupby(["activation", "depth"]):
                try:
                    figures.append(self._heatmap(part, stat, act, d))
                except NothingToDraw as err:  # the other heatmaps still count
                    if self.strict:
                        raise
                    self._not_drawn_one(f"heatmap_{stat}_{act}_depth{d}.png", str(err))
        return figures

    def _heatmap(self, part: pd.DataFrame, stat: str, act: str, depth: int) -> Figure:
        """One panel (about 1.6 x 1.6 inches) per init, four a row; exact zeros of act_std light grey,
        non-finite cells dark grey (both were the same grey)."""
        self._check_pooling(part, ["activation", "depth", "init", "layer", "epoch"])
        inits = self._present("init", part)
        wrap = min(4, len(inits))
        nrows = -(-len(inits) // wrap)
        fig, axes = plt.subplots(nrows, wrap, squeeze=False, sharex=True, sharey=True, layout="constrained",
                                 figsize=(0.9 + 1.65 * wrap + 1.0, 0.6 + 1.9 * nrows))
        values = part[stat].replace([np.inf, -np.inf], np.nan)
        if values.isna().all():
            raise NothingToDraw(f"no finite {stat} for {act} at depth {depth}")
        zeros = stat == "act_std" and (values == 0).any()
        if stat == "act_std":
            low = max(float(values[values > 0].min()) if (values > 0).any() else FLOOR, TINY)
            cmap = plt.get_cmap("viridis").with_extremes(under="0.8")  # 0 light grey
            high = float(values.max())  # the data's own range (was stretched to 10x the minimum)
            style = {"norm": LogNorm(low, high if high > low else 10 * low), "cmap": cmap}
        else:
            lim = max(values.abs().quantile(0.99), 1e-3)
            style = {"vmin": -lim, "vmax": lim, "center": 0.0, "cmap": "vlag"}
        epochs = sorted(part["epoch"].unique())
        rows = sorted(part["layer"].unique())  # 1..depth for an MLP; other models' hidden sites in order
        ticks = {"x": round_ticks(epochs, 4), "y": round_ticks(rows, 5)}
        for i, (ax, init) in enumerate(zip(axes.flat, inits)):
            grid = part[part["init"] == init].pivot_table(index="layer", columns="epoch", values=stat, dropna=False)
            grid = grid.reindex(index=rows, columns=epochs).replace([np.inf, -np.inf], np.nan)
            if stat == "act_std":  # a zero drawn below the colour range (light grey)
                grid = grid.where(grid != 0, style["norm"].vmin / 10)
            ax.set_facecolor(NOT_FINITE)  # seaborn leaves NaN cells (non-finite, missing) undrawn
            ax.grid(False)
            sns.heatmap(grid, ax=ax, cbar=False, xticklabels=False, yticklabels=False, rasterized=True, **style)
            ax.set_xticks(ticks["x"] + 0.5, [epochs[i] for i in ticks["x"]], rotation=0)
            ax.set_yticks(ticks["y"] + 0.5, [f"{rows[i]:g}" for i in ticks["y"]], rotation=0)
            ax.set_title(textwrap.fill(init, 18), fontsize="medium")
            ax.set(xlabel="epoch" if i + wrap >= len(inits) else "", ylabel="layer" if i % wrap == 0 else "")
        for ax in axes.flat[len(inits):]:
            ax.set_visible(False)
        bar = fig.colorbar(axes.flat[0].collections[0], ax=axes, shrink=min(1.0, 0.4 + 0.3 * nrows),
                           label="post-activation std" if stat == "act_std" else "post-activation mean")
        if stat == "act_std":
            self._plain_log_ticks(bar.ax.yaxis)
        fig.suptitle(f"{act}, depth {depth}")
        dark = "; dark grey cells are not finite: the run diverged" if values.isna().any() else ""
        what = ("standard deviation (log colour; light grey cells are exactly 0" + dark + ")" if zeros
                else "standard deviation (log colour" + dark + ")" if stat == "act_std" else f"mean (0 is white{dark})")
        return self._save(fig, f"heatmap_{stat}_{act}_depth{depth}", (
            f"{act}, depth {depth}: post-activation {what} per hidden layer (rows, input side on "
            f"top) and epoch (columns), one panel per init, mean over seeds."),
            "Activation statistics through training")
