"""Figures from the analysis tables, one function per figure kind.

Each init and each activation keeps one colour in every figure (INIT_COLORS, ACTIVATION_COLORS);
related inits share a hue family (he blue/cyan, xavier green/olive, normal orange/brown) and
differ in dashes. With several seeds a line is the mean and its band the 95% t-interval (on log
axes, of the logs). Figures are at most 7 inches wide with 10-11 pt text, so they stay legible
printed one column wide; figures with a panel or cell per choice grow with the grid instead of
shrinking their text.

A figure pools runs only across seeds: every other varied choice is a line, a panel, or fixed per
figure (Plotter.all draws the whole set once per value of the keys no figure shows, named in the
title and file name), and each figure checks this before drawing (PoolingError). On log axes, exact
zeros are drawn at the axis floor with their own marker; a figure that cannot be drawn is listed
with the reason (Plotter.not_drawn), never dropped silently.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from scipy import stats  # noqa: E402

from initlab.analysis import ACTIVATIONS, INITS, Tables  # noqa: E402
from initlab.log_ticks import log_ticks  # noqa: E402

THEME = {"context": "paper", "style": "whitegrid", "font_scale": 1.25}  # seaborn.set_theme arguments

log = logging.getLogger(__name__)

_T10 = dict(zip(("blue", "orange", "green", "red", "purple", "brown", "pink", "grey", "olive", "cyan"),
                sns.color_palette("tab10")))
INIT_COLORS = dict(zip(INITS, [_T10[c] for c in ("blue", "cyan", "green", "olive", "orange", "brown", "grey",
                                                     "red", "purple", "pink")]))
ACTIVATION_COLORS = dict(zip(ACTIVATIONS, [*sns.color_palette("Dark2"), (0.0, 0.0, 0.0)]))
# Line dashes per init family, so lines that coincide (xavier and orthogonal) stay apart in print.
INIT_DASHES = {"he": "", "xavier": (5, 2), "normal": (1, 1.2), "trunc": (2.5, 1.2), "zero": (3, 1.5),
               "orthogonal": (6, 1.5, 1.5, 1.5), "lecun": (8, 2)}
# Markers per init (in the study's order), on per-layer lines: lines that coincide (normal and
# trunc_normal) stay visible as alternating markers. "v" is left for exact zeros (ZERO_MARKER).
INIT_MARKERS = ("o", "s", "^", "D", "P", "X", "*", "<", ">", "h")
WIDTH = 7.0  # inches
FLOOR = 1e-6  # log-scale heatmaps clip below this (a zero-init layer has std 0)
TINY = 1e-300  # the lowest floor a log axis gets (float64 underflows a little below)
ZERO_MARKER = {"marker": "v", "markersize": 6, "markerfacecolor": "none", "markeredgewidth": 1.2, "linestyle": ""}
ZERO_LABEL = "value exactly 0"


@dataclass
class Figure:
    path: str  # the PNG, relative to the output folder
    caption: str
    section: str


# The files each figure family writes, as README.md lists them: the report names a figure not
# drawn by its file, not by the method that draws it.
FIGURE_FILES = {"grid": "grid_test_accuracy.png", "accuracy_vs_depth": "accuracy_vs_depth.png",
                "epochs_to_95": "epochs_to_95_vs_depth.png", "act_std_vs_layer": "act_std_vs_layer_depth*.png",
                "gradients": "grad_norm_vs_layer_depth*.png", "delta_at_init": "delta_rms_at_init_depth*.png",
                "dead_and_saturated": "dead_saturated_vs_layer_depth*.png", "heatmaps": "heatmap_*.png",
                "curves_by_activation": "curves_activation_*.png", "curves_by_init": "curves_init_*.png",
                "he_factor": "he_factor_*.png"}


@dataclass
class NotDrawn:
    """A figure that the tables should give but that was not drawn, and why (one line)."""

    figure: str
    reason: str


class PoolingError(ValueError):
    """A figure would average runs that differ in more than their seed."""


class NothingToDraw(ValueError):
    """The data a figure needs is empty or not finite; the message says which."""


def _context_text(values: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def log_floor(values: pd.Series) -> float:
    """The floor of a log axis for ``values``: a decade below the smallest positive value."""
    positive = values[(values > 0) & np.isfinite(values)]
    return max(float(positive.min()) / 10, TINY) if len(positive) else 1.0


def t95(values: pd.Series) -> tuple[float, float]:
    """95% t-interval of the mean over seeds (a single seed draws no band)."""
    mean = values.mean()
    if len(values) < 2:
        return mean, mean
    half = stats.sem(values) * stats.t.ppf(0.975, len(values) - 1)
    return mean - half, mean + half


# On log axes, seeds are averaged as logs: geometric mean, band from the t-interval of the logs,
# so a band never reaches below zero.
LOG_BAND = {"estimator": lambda v: float(np.exp(np.log(v).mean())),
            "errorbar": lambda v: tuple(np.exp(t95(np.log(v))))}


def _subset(tables: Tables, jobs: set) -> Tables:
    """``tables`` restricted to ``jobs``."""
    def keep(frame: Optional[pd.DataFrame]) -> Optional[pd.DataFrame]:
        if frame is None:
            return None
        part = frame[frame["job"].isin(jobs)]
        return None if part.empty else part

    return dataclasses.replace(tables, runs=keep(tables.runs), epochs=keep(tables.epochs),
                               layers=keep(tables.layers), jacobian=keep(tables.jacobian),
                               spectra=keep(tables.spectra))


class Plotter:
    """Draws every figure the tables support into ``out/figures``; returns them with captions.

    Its frames name the display labels ``init`` and ``activation`` ("he_normal factor=0.5" where a
    parameter varies) and keep the option names as ``init_name`` and ``activation_name``.
    """

    files = FIGURE_FILES  # figure family (method) -> the files it writes

    def __init__(self, tables: Tables, out: Path, formats: tuple[str, ...] = ("png",),
                 detail_depths: Optional[list[int]] = None, strict: bool = False, context: Optional[dict] = None):
        """``strict``: a figure that fails raises instead of being listed in ``not_drawn`` (tests);
        ``context``: the values of keys no figure shows that every run here shares (named in titles)."""
        self.tables, self.out, self.detail_depths, self.strict = tables, out, detail_depths, strict
        self.context = context or {}
        self.not_drawn: list[NotDrawn] = []
        self.kept: Optional[dict[str, plt.Figure]] = None  # a dict: _save keeps figures open in it (tests)
        self.dpi = 200  # of the PNGs (tests draw coarser ones; sizes are in inches either way)
        self.keys, self.dir = tables.keys, out / "figures"
        self.formats = tuple(dict.fromkeys(("png", *formats)))
        self.dir.mkdir(parents=True, exist_ok=True)
        names = {"init": "init_name", "activation": "activation_name", "init_label": "init",
                 "activation_label": "activation"}
        self.runs, self.epochs, self.layers = (f.rename(columns=names) for f in
                                               (tables.runs, tables.epochs, tables.layers))
        self.jacobian, self.spectra = (None if f is None else f.rename(columns=names)
                                       for f in (tables.jacobian, tables.spectra))
        depths = sorted(self.runs["depth"].unique())
        self.detail = [d for d in (detail_depths or depths[-1:]) if d in depths]
        self.order = {g: self._levels(g) for g in ("init", "activation")}
        self.palette = {g: self._palette(g) for g in ("init", "activation")}
        names = self.runs.drop_duplicates("init").set_index("init")["init_name"]
        self.dashes = {label: INIT_DASHES.get(names[label].split("_")[0], (4, 1, 1, 1))
                       for label in self.order["init"]}
        self.markers = {label: INIT_MARKERS[i % len(INIT_MARKERS)] for i, label in enumerate(self.order["init"])}

    # --- colours and order --------------------------------------------------------------------
    def _levels(self, group: str) -> list[str]:
        known = INITS if group == "init" else ACTIVATIONS
        name = f"{group}_name"
        runs = self.runs.assign(_rank=self.runs[name].map(lambda n: known.index(n) if n in known else len(known)))
        params = [k for k in self.keys if k.startswith(group + ".")]
        return list(dict.fromkeys(runs.sort_values(["_rank", name, *params])[group]))

    def _palette(self, group: str) -> dict:
        """A label's colour is its option's; parameter variants are shades of it, light to dark."""
        colors = INIT_COLORS if group == "init" else ACTIVATION_COLORS
        names = self.runs.drop_duplicates(group).set_index(group)[f"{group}_name"]
        spare = iter(sns.color_palette("husl", len(names)))
        palette = {}
        for name in dict.fromkeys(names[self.order[group]]):
            labels = [label for label in self.order[group] if names[label] == name]
            base = np.array(colors.get(name) or next(spare))
            ends = [base + (1 - base) * 0.35, base, base * 0.6]
            palette.update(zip(labels, [tuple(base)] if len(labels) == 1 else
                               sns.blend_palette([tuple(c) for c in ends], len(labels))))
        return palette

    def _hue(self, group: str) -> dict:
        return {"hue": group, "hue_order": self.order[group], "palette": self.palette[group]}

    def _save(self, fig: plt.Figure, name: str, caption: str, section: str) -> Figure:
        """Every format into figures/; the shared context goes into the title, caption and file name."""
        if self.context:
            context = _context_text(self.context)
            name += "_" + "_".join(f"{k}={v}" for k, v in self.context.items())
            title = fig._suptitle
            if title is not None and title.get_text():
                title.set_text(f"{title.get_text()}; {context}")
            else:
                fig.suptitle(context, y=1.0, va="bottom")
            caption = f"{context}. {caption}"
        name = re.sub(r"[^\w.=-]+", "_", name)
        for fmt in self.formats:
            fig.savefig(self.dir / f"{name}.{fmt}", dpi=self.dpi, bbox_inches="tight")
        if self.kept is not None:
            self.kept[name] = fig
        else:
            plt.close(fig)
        return Figure(f"figures/{name}.png", caption, section)

    def _check_pooling(self, data: pd.DataFrame, by: list[str]) -> None:
        """Raise PoolingError if rows that one line, cell or panel (``by``) averages come from runs
        that differ in a varied key other than the seed. ``data`` has a ``job`` column."""
        columns = {"init": "init_name", "activation": "activation_name"}
        varied = [columns.get(k, k) for k in self.keys if k != "seed"]
        varied = [k for k in varied if k not in by and k in self.runs]
        if not varied or data.empty:
            return
        by = list(dict.fromkeys(b for b in by if b in data))
        frame = data[["job", *by]].drop_duplicates().join(self.runs.set_index("job")[varied], on="job")
        for key in varied:
            n = frame.groupby(by, dropna=False)[key].nunique(dropna=False) if by else frame[key].nunique(dropna=False)
            if (np.atleast_1d(n) > 1).any():
                raise PoolingError(f"it would pool runs that differ in {key} (only seeds may be pooled)")

    # --- the figures --------------------------------------------------------------------------
    def all(self) -> list[Figure]:
        """Every figure, in report order, once per value of the varied keys no figure shows.

        A figure that fails is logged and listed in ``not_drawn`` with the reason (re-raised when
        ``strict``); the other figures still count.
        """
        extra = [k for k in self.tables.extra_keys if k in self.runs]
        if not extra or self.context:
            return self._all_here()
        figures = []
        for values, part in self.tables.runs.groupby(extra, sort=False, dropna=False):
            context = dict(zip(extra, values if isinstance(values, tuple) else (values,)))
            sub = type(self)(_subset(self.tables, set(part["job"])), self.out, self.formats, self.detail_depths,
                             self.strict, context)
            sub.kept, sub.dpi = self.kept, self.dpi
            figures += sub.all()
            self.not_drawn += sub.not_drawn
        return figures

    def _all_here(self) -> list[Figure]:
        """The figures of one context, drawn in the house theme (THEME), which is undone afterwards:
        drawing never changes matplotlib's global settings for the caller."""
        with matplotlib.rc_context():
            sns.set_theme(**THEME)
            return self._draw_all_here()

    def _draw_all_here(self) -> list[Figure]:
        steps: list[Callable[[], list[Figure]]] = [
            self.grid, self.accuracy_vs_depth, self.epochs_to_95, self.act_std_vs_layer, self.gradients,
            self.delta_at_init, self.dead_and_saturated, self.heatmaps, self.curves_by_activation,
            self.curves_by_init, self.he_factor, *self.extra_figures()]
        figures = []
        where = f" ({_context_text(self.context)})" if self.context else ""
        with warnings.catch_warnings():  # seaborn's tight_layout vs colour-bar axes; savefig crops anyway
            warnings.filterwarnings("ignore", ".*[Tt]ight.?layout", UserWarning)
            warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="seaborn")
            for step in steps:
                try:
                    figures += step()
                except Exception as err:  # the tables and other figures still count; the report says so
                    plt.close("all")
                    if self.strict:
                        raise
                    expected = isinstance(err, (NothingToDraw, PoolingError))
                    reason = str(err) if expected else f"{type(err).__name__}: {err}"
                    reason = (reason.splitlines() or [type(err).__name__])[0]
                    figure = self.files.get(step.__name__, step.__name__) + where
                    log.warning("could not draw %s: %s", figure, reason)
                    self.not_drawn.append(NotDrawn(figure, reason))
        return figures

    def extra_figures(self) -> list[Callable[[], list[Figure]]]:
        """Figure kinds a subclass adds after these (initlab.theory_plots adds the theory ones)."""
        return []

    def curves_by_activation(self) -> list[Figure]:
        return self.curves("activation")

    def curves_by_init(self) -> list[Figure]:
        return self.curves("init")

    def _present(self, group: str, data: pd.DataFrame) -> list[str]:
        return [x for x in self.order[group] if x in set(data[group])]

    def _curve_frame(self, epochs: pd.DataFrame) -> pd.DataFrame:
        """Epochs in long form: one row per (run, epoch, split, metric) for train/test styling."""
        ep = epochs.melt(id_vars=["job", "init", "activation", "depth", "epoch"],
                         value_vars=["train_acc", "test_acc", "train_loss", "test_loss"])
        ep[["split", "metric"]] = ep["variable"].str.split("_", expand=True)
        ep["metric"] = ep["metric"].map({"acc": "accuracy", "loss": "loss"})
        ep["value"] = ep["value"].replace([np.inf, -np.inf], np.nan)
        return ep

    @staticmethod
    def _plain_log_ticks(axis: matplotlib.axis.Axis) -> None:
        """The shared log-axis tick policy (initlab.log_ticks): labelled ticks in range, never overlapping."""
        log_ticks(axis)

    def _accuracy_and_loss_axes(self, acc: plt.Axes, loss: plt.Axes) -> None:
        acc.set(ylim=(0, 1), yticks=[0, 0.5, 1])
        loss.set_yscale("log")
        self._plain_log_ticks(loss.yaxis)

    def curves(self, by: str) -> list[Figure]:
        """Figures 1 and 2: accuracy and loss vs epoch, one figure per ``by``, facets by depth."""
        hue = "init" if by == "activation" else "activation"
        self._check_pooling(self.epochs, [by, hue, "depth", "epoch"])
        ep = self._curve_frame(self.epochs)
        figures = []
        for name in self.order[by]:
            part = ep[ep[by] == name]
            g = sns.relplot(part, kind="line", x="epoch", y="value", **self._hue(hue),
                            style="split", style_order=["test", "train"], row="depth", col="metric",
                            col_order=["accuracy", "loss"], errorbar=t95, height=1.7, aspect=1.65,
                            facet_kws={"sharey": "col", "margin_titles": True})
            g.set_titles(row_template="depth {row_name}", col_template="{col_name}")
            g.set_axis_labels("epoch", "")
            for acc, loss in g.axes:
                self._accuracy_and_loss_axes(acc, loss)
            g.figure.subplots_adjust(hspace=0.3)  # 1.0 of a row and 0.0 of the one above stay apart
            g.figure.suptitle(f"{by} {name}", y=1.01)
            figures.append(self._save(g.figure, f"curves_{by}_{name}", (
                f"{by} {name}: test (solid) and train (dashed) accuracy and loss (log scale) per epoch, "
                f"one line per {hue}, one row per depth; epoch 0 is the untrained network."),
                f"Training curves by {by}"))
        return figures

    @staticmethod
    def _legend_below(g: sns.FacetGrid) -> None:
        """Under the panels, so that the panels get the full page width."""
        sns.move_legend(g, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, title=None, frameon=False)
        g.tight_layout()
        if g.axes.shape[0] > 1:  # the top tick label of a row and the bottom one of the row above stay apart
            g.figure.subplots_adjust(hspace=max(g.figure.subplotpars.hspace, 0.3))

    # --- per-layer pictures at the detail depths ----------------------------------------------
    def _detail_layers(self, hidden_only: bool = True) -> pd.DataFrame:
        """Layer rows at init, mid-training and the last epoch of each run at the detail depths."""
        layers = self.layers[self.layers["depth"].isin(self.detail)]
        if hidden_only:
            layers = layers[layers["layer"] <= layers["depth"]]
        last = layers.groupby("job")["epoch"].transform("max")
        when = np.select([layers["epoch"] == 0, layers["epoch"] == last // 2, layers["epoch"] == last],
                         ["at init", "middle of training", "end of training"], "")
        return layers.assign(when=when)[when != ""]

    def _by_layer(self, data: pd.DataFrame, y: str, ylabel: str, name: str, caption: str, log: bool,
                  row: Optional[str] = None, row_labels: Optional[dict] = None, col: str = "activation",
                  col_order: Optional[list] = None, style: str = "init", col_wrap: Optional[int] = None,
                  ylim: Optional[tuple] = None) -> Figure:
        """Per-layer lines, one per init; inits that overlap (xavier, orthogonal) differ in dashes too.

        ``row_labels`` (value -> title) orders and names the rows; their titles sit on the right. On
        a log axis (``log``), exact zeros sit at the axis floor with an open triangle (ZERO_LABEL) and
        non-finite values are left out; raises NothingToDraw when nothing finite is left.
        """
        data = data.assign(**{y: data[y].replace([np.inf, -np.inf], np.nan)}).dropna(subset=[y])
        if data.empty:
            raise NothingToDraw(f"no finite {y} at depth {', '.join(map(str, self.detail))}")
        self._check_pooling(data, ["activation", "init", "depth", "layer", *([row] if row else []),
                                   *([col] if col else []), *([style] if style != "init" else [])])
        all_zero = log and not (data[y] > 0).any()
        if all_zero:  # zero init: a linear axis shows 0 as 0
            log, caption = False, caption.replace(", log scale", "") + " Every value is exactly 0."
        floor = log_floor(data[y]) if log else 0.0
        zero = data[y] < floor if log else (data[y] == 0) & all_zero  # marked where a log axis was asked for
        if log:
            data = data.assign(**{y: data[y].clip(lower=floor)})
        col_order = col_order or self._present("activation", data)
        ncols = col_wrap or len(col_order)
        inits = self._present("init", data)
        style_kw = ({"style": "init", "style_order": inits, "dashes": self.dashes,
                     "markers": {i: self.markers[i] for i in inits}, "markersize": 4, "markeredgewidth": 0}
                    if style == "init"
                    else {"style": style, "style_order": ["at init", "end of training"]})
        width = min(3.5, max(WIDTH / ncols, 1.6))
        height = min(1.9, width)
        if row:  # row titles stand vertically at the right: wrapped, so they stay shorter than a panel
            row_labels = {k: textwrap.fill(str(v), 10) for k, v in row_labels.items()}
            data = data.assign(**{row: data[row].map(row_labels)})
        g = sns.relplot(data, kind="line", x="layer", y=y, hue="init", hue_order=inits,
                        palette=self.palette["init"], **style_kw, **(LOG_BAND if log else {"errorbar": t95}),
                        row=row, row_order=list(row_labels.values()) if row else None, col=col,
                        col_order=col_order, col_wrap=col_wrap, height=height, aspect=width / height,
                        facet_kws={"sharey": "row" if row else True, "margin_titles": bool(row)})
        if zero.any():
            zeros = data[zero.to_numpy()]

            def mark(data: pd.DataFrame, **_) -> None:
                part = data[data.index.isin(zeros.index)]
                for init, rows in part.groupby("init"):
                    plt.gca().plot(rows["layer"], rows[y], color=self.palette["init"][init], **ZERO_MARKER)

            g.map_dataframe(mark)
            legend = dict(g._legend_data)
            legend[ZERO_LABEL] = Line2D([], [], color="0.3", **ZERO_MARKER)
            g._legend.remove()
            g.add_legend(legend_data=legend, label_order=list(legend))
            if log:
                for ax in g.axes.flat:
                    ax.set_ylim(bottom=floor / 2)
        self._legend_below(g)
        g.set_titles(template="{col_name}", row_template="{row_name}", col_template="{col_name}")
        g.set_axis_labels("layer", textwrap.fill(ylabel, 16) if row else ylabel)  # stacked rows: no overlap
        for ax in g.axes.flat:
            if log:
                ax.set_yscale("log")
                self._plain_log_ticks(ax.yaxis)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
            self._stagger_markers(ax, data["layer"].nunique())
            if ylim:
                ax.set(ylim=ylim, yticks=[0, 0.5, 1])
        if zero.any() and log:
            caption += f" Open triangles: exactly 0, drawn at the axis floor ({floor:.2g})."
        elif zero.any():
            caption += " Open triangles: exactly 0."
        return self._save(g.figure, name, caption, "Signal propagation")

    @staticmethod
    def _stagger_markers(ax: plt.Axes, points: int) -> None:
        """Up to six markers per line, each init's at its own layers (offset by its place), so
        coinciding lines show alternating markers instead of one hiding the other."""
        lines = [line for line in ax.lines  # drawn lines: not seaborn's empty legend proxies, not zeros
                 if line.get_marker() not in (None, "", "None", "v") and len(line.get_xdata())]
        step = max(1, min(points, max(-(-points // 6), len(lines))))  # each line its own offset
        for k, line in enumerate(lines):
            line.set_markevery((k % step, step))

    def act_std_vs_layer(self) -> list[Figure]:
        """Figure 3b: the signal-propagation picture, at init and after training."""
        data = self._detail_layers()
        data = data[data["when"] != "middle of training"]
        return [self._by_layer(
            data[data["depth"] == d], "act_std", "post-activation std", f"act_std_vs_layer_depth{d}",
            f"Post-activation std per hidden layer at init (top) and after training (bottom), depth {d}, "
            f"log scale.", True,
            row="when", row_labels={"at init": "at init", "end of training": "after training"})
            for d in self.detail]

    def gradients(self) -> list[Figure]:
        """Figure 4: weight-gradient norm per layer at init, mid-training and the end."""
        data = self._detail_layers(hidden_only=False)
        figures = []
        for d in self.detail:
            part = data[data["depth"] == d]
            figures.append(self._by_layer(
                part, "grad_norm", "weight-grad norm", f"grad_norm_vs_layer_depth{d}",
                f"Norm of the weight gradient on the probe batch per layer (layer {d + 1} is the output "
                f"layer) at init, mid-training and the last epoch, depth {d}, log scale.", True, row="activation",
                row_labels={a: a for a in self._present("activation", part)}, col="when",
                col_order=["at init", "middle of training", "end of training"]))
        return figures

    def delta_at_init(self) -> list[Figure]:
        """Figure 4b: the backward signal dL/dh (rms) per layer of the untrained network."""
        data = self._detail_layers(hidden_only=False)
        data = data[data["when"] == "at init"]
        figures = []
        for d in self.detail:
            part = data[data["depth"] == d]
            acts = self._present("activation", part)
            figures.append(self._by_layer(
                part, "delta_rms", "rms dL/dh", f"delta_rms_at_init_depth{d}",
                f"RMS of the loss gradient with respect to each layer's pre-activations (the backward "
                f"signal) in the untrained network, depth {d}, log scale.", True,
                col_wrap=min(len(acts), 2)))
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
            id_vars=["activation", "init", "depth", "layer", "when", "job"], value_vars=stats, var_name="stat")
        rows = {"frac_zero": "zero entries", "frac_dead": "dead units", "frac_saturated": "saturated entries"}
        rows = {k: v for k, v in rows.items() if k in stats}
        what = ("the fraction of entries (probe sample x unit) exactly 0 (frac_zero; about half in a healthy "
                "relu layer), " + ("the fraction of units 0 on every probe sample (frac_dead: dead units), "
                                   if "frac_dead" in stats else "")
                + "and the fraction of entries saturated (frac_saturated: |tanh| > 0.99, sigmoid < 0.01 or > 0.99)")
        figures = []
        for d in self.detail:
            fig = self._by_layer(
                data[data["depth"] == d].dropna(subset=["value"]), "value", "fraction",
                f"dead_saturated_vs_layer_depth{d}",
                f"Per hidden layer, one row each: {what}; at init (solid) and after training (dashed), depth {d}.",
                False, row="stat", row_labels=rows, style="when", ylim=(-0.03, 1.03))
            figures.append(fig)
        return figures

    def heatmaps(self) -> list[Figure]:
        """Figure 3: act_std and act_mean over layer x epoch, one panel per init."""
        layers = self.layers[self.layers["depth"].isin(self.detail)]
        layers = layers[layers["layer"] <= layers["depth"]]
        figures = []
        for stat in ("act_std", "act_mean"):
            for (act, d), part in layers.groupby(["activation", "depth"]):
                try:
                    figures.append(self._heatmap(part, stat, act, d))
                except NothingToDraw as err:  # the other heatmaps still count
                    if self.strict:
                        raise
                    plt.close("all")
                    log.warning("could not draw heatmap_%s_%s_depth%s: %s", stat, act, d, err)
                    self.not_drawn.append(NotDrawn(f"heatmap_{stat}_{act}_depth{d}.png", str(err)))
        return figures

    def _heatmap(self, part: pd.DataFrame, stat: str, act: str, depth: int) -> Figure:
        """One panel (about 1.6 x 1.6 inches) per init, four a row; exact zeros of act_std grey."""
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
            cmap = plt.get_cmap("viridis").with_extremes(bad="0.8")  # LogNorm masks 0: grey cells
            style = {"norm": LogNorm(low, max(values.max(), 10 * low)), "cmap": cmap}
        else:
            lim = max(values.abs().quantile(0.99), 1e-3)
            style = {"vmin": -lim, "vmax": lim, "center": 0.0, "cmap": "vlag"}
        epochs = sorted(part["epoch"].unique())
        ticks = {"x": np.unique(np.linspace(0, len(epochs) - 1, min(len(epochs), 4)).round().astype(int)),
                 "y": np.unique(np.linspace(0, depth - 1, min(depth, 5)).round().astype(int))}
        for i, (ax, init) in enumerate(zip(axes.flat, inits)):
            grid = part[part["init"] == init].pivot_table(index="layer", columns="epoch", values=stat, dropna=False)
            grid = grid.reindex(index=range(1, depth + 1), columns=epochs).replace([np.inf, -np.inf], np.nan)
            if stat == "act_std":  # a zero stays 0 (grey); only missing cells are blank
                grid = grid.where(grid != 0, -1.0)
            sns.heatmap(grid, ax=ax, cbar=False, xticklabels=False, yticklabels=False, rasterized=True, **style)
            ax.set_xticks(ticks["x"] + 0.5, [epochs[i] for i in ticks["x"]], rotation=0)
            ax.set_yticks(ticks["y"] + 0.5, ticks["y"] + 1, rotation=0)
            ax.set_title(textwrap.fill(init, 18), fontsize="medium")
            ax.set(xlabel="epoch" if i + wrap >= len(inits) else "", ylabel="layer" if i % wrap == 0 else "")
        for ax in axes.flat[len(inits):]:
            ax.set_visible(False)
        bar = fig.colorbar(axes.flat[0].collections[0], ax=axes, shrink=min(1.0, 0.4 + 0.3 * nrows),
                           label="post-activation std" if stat == "act_std" else "post-activation mean")
        if stat == "act_std":
            self._plain_log_ticks(bar.ax.yaxis)
        fig.suptitle(f"{act}, depth {depth}")
        what = ("standard deviation (log colour; grey cells are exactly 0)" if zeros
                else "standard deviation (log colour)" if stat == "act_std" else "mean (0 is white)")
        return self._save(fig, f"heatmap_{stat}_{act}_depth{depth}", (
            f"{act}, depth {depth}: post-activation {what} per hidden layer (rows, input side on "
            f"top) and epoch (columns), one panel per init, mean over seeds."),
            "Activation statistics through training")

    # --- depth and the grid -------------------------------------------------------------------
    def _vs_depth(self, data: pd.DataFrame, rows: dict[str, str], name: str, caption: str,
                  refline: Optional[float] = None, ylim: Optional[tuple] = None) -> Figure:
        """Per-run values vs depth, one line per init, a column per activation, a row per measure."""
        self._check_pooling(data, ["activation", "init", "depth"])
        acts = self._present("activation", data)
        width = min(3.5, WIDTH / len(acts))
        height = min(1.9, width)
        inits = self._present("init", data)
        g = sns.relplot(data, kind="line", x="depth", y="value", hue="init", hue_order=inits,
                        palette=self.palette["init"], style="init", style_order=inits, dashes=self.dashes,
                        markers=True,
                        row="measure", row_order=list(rows), col="activation", col_order=acts,
                        errorbar=t95, height=height, aspect=width / height,
                        facet_kws={"sharey": "row"})
        self._legend_below(g)
        g.set_titles(template="{col_name}")
        for ax_row, label in zip(g.axes, rows.values()):
            ax_row[0].set_ylabel(label)
        for ax in g.axes[1:].flat:
            ax.set_title("")
        depths = np.array(sorted(self.runs["depth"].unique()))
        spread = np.diff(depths).min() / np.ptp(depths) if len(depths) > 1 else 1.0
        for ax in g.axes.flat:  # every depth labelled, unless the labels would collide
            if len(depths) <= 8 and spread * width > 0.25:  # inches between neighbouring labels
                ax.set_xticks(depths)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        if name.startswith("epochs"):
            for ax in g.axes.flat:
                ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        if refline is not None:
            g.refline(y=refline, color="grey", linestyle=":")
        if ylim:
            g.set(ylim=ylim)
        for ax in g.axes[-1]:
            ax.set_xlabel("depth")
        return self._save(g.figure, name, caption, "Accuracy and depth")

    def accuracy_vs_depth(self) -> list[Figure]:
        """Figure 5: final train and test accuracy vs depth (the reference study's headline plot)."""
        rows = {"final_train_acc": "final train acc", "final_test_acc": "final test acc"}
        data = self.runs.melt(id_vars=["job", "activation", "init", "depth"], value_vars=list(rows), var_name="measure")
        chance = self.runs["chance"].dropna().unique()
        return [self._vs_depth(data, rows, "accuracy_vs_depth", (
            "Final train (top) and test (bottom) accuracy vs depth, one line per init, one column per "
            "activation" + ("; the dotted line is chance." if len(chance) == 1 else ".")),
            refline=chance[0] if len(chance) == 1 else None, ylim=(0, 1.02))]

    def epochs_to_95(self) -> list[Figure]:
        """Figure 6: how fast trainable runs converge, in both studies' definitions."""
        rows = {"epochs_to_95_peak_train": "epochs to 95%\nof peak train acc",
                "epochs_to_95_final_test": "epochs to 95%\nof final test acc"}
        data = self.runs[self.runs["trainable"].fillna(False).astype(bool)]
        data = data.melt(id_vars=["job", "activation", "init", "depth"], value_vars=list(rows), var_name="measure")
        if data["value"].notna().sum() == 0:
            return []
        return [self._vs_depth(data, rows, "epochs_to_95_vs_depth", (
            "Epochs until train accuracy first reaches 95% of its peak (top, as the reference study) and "
            "test accuracy 95% of its final value (bottom, as the CNN study); trainable runs only."))]

    def grid(self) -> list[Figure]:
        """Figure 7: the whole grid, a panel per activation, init x depth cells; † diverged, hatched
        untrainable. Cells keep their size (about 0.42 x 0.3 inches), so the figure grows with the
        grid: as many panels a row as fit in about 8 inches (one for the full grid), more rows below."""
        cells = self.runs.groupby(["depth", "init", "activation"]).agg(
            acc=("final_test_acc", "mean"), diverged=("status", lambda s: (s == "diverged").any()),
            trainable=("trainable", "mean")).reset_index()
        depths = sorted(cells["depth"].unique())
        inits, acts = self._present("init", self.runs), self._present("activation", self.runs)
        if len(inits) == len(acts) == 1:  # a single cell per depth: figure 5 says it better
            return []
        self._check_pooling(self.runs, ["depth", "init", "activation"])
        cell_w, cell_h = 0.42, 0.3
        label_w = 0.09 * max(len(i) for i in inits) + 0.3  # the init names left of the first column
        panel_w = max(cell_w * len(depths), 0.9)
        ncols = max(1, min(len(acts), int((WIDTH + 1.0 - label_w - 0.9) // (panel_w + 0.3))))
        nrows = -(-len(acts) // ncols)
        fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=True, layout="constrained",
                                 figsize=(label_w + ncols * (panel_w + 0.3) + 0.9,
                                          nrows * (cell_h * len(inits) + 0.95) + 0.2))
        chars = max(6, int(panel_w / 0.085))  # a panel title wraps at the panel's width
        mesh = None
        for ax, act in zip(axes.flat, acts):
            cell = cells[cells["activation"] == act].set_index(["init", "depth"])
            acc = cell["acc"].unstack().reindex(index=inits, columns=depths)
            diverged = cell["diverged"].unstack().reindex_like(acc).eq(True)
            text = acc.map(lambda v: "" if pd.isna(v) else f"{v:.2f}".lstrip("0"))
            text = text.where(~diverged, text.map(lambda s: f"{s}†" if s else "div"))
            sns.heatmap(acc, ax=ax, vmin=0, vmax=1, cmap="mako", annot=text, fmt="", cbar=False,
                        annot_kws={"fontsize": 7.5}, linewidths=0.5, linecolor="white",
                        xticklabels=[f"{d:g}" for d in depths], yticklabels=inits)
            mesh = ax.collections[0]
            untrainable = cell["trainable"].astype(float).unstack().reindex_like(acc) < 0.5
            for i, j in zip(*np.nonzero(untrainable.to_numpy())):
                ax.add_patch(Rectangle((j, i), 1, 1, fill=False, hatch="//", edgecolor="0.55", lw=0))
            ax.set_title(textwrap.fill(act, chars), fontsize="medium")
            ax.set_xlabel("depth")
            ax.set_ylabel("")
            ax.tick_params(axis="x", labelrotation=0 if len(depths) * 3 * 0.09 < panel_w else 90)
            ax.tick_params(axis="y", labelrotation=0)
        for ax in axes.flat[len(acts):]:
            ax.set_visible(False)
        fig.colorbar(mesh, ax=axes, label="final test accuracy", shrink=min(1.0, 2.5 / fig.get_figheight() + 0.3))
        return [self._save(fig, "grid_test_accuracy", (
            "Final test accuracy (mean over seeds) for every init (rows) and depth (columns), one panel per "
            "activation; hatched: not trainable (at most chance + margin), †: diverged."), "The grid at a glance")]

    # --- he factor ----------------------------------------------------------------------------
    def he_factor(self) -> list[Figure]:
        """Figure 8 (reference section 10): curves and per-layer statistics for each init.factor.

        One figure per activation, init, depth and value of every other varied init parameter
        (``init.mode``): only seeds are pooled.
        """
        if "init.factor" not in self.keys:
            return []
        figures = []
        runs = self.runs[self.runs["init.factor"].notna()]
        fixed = [k for k in self.keys if k.startswith("init.") and k != "init.factor" and k in runs]
        for values, part in runs.groupby(["activation", "init_name", "depth", *fixed], sort=False, dropna=False):
            if part["init.factor"].nunique() > 1:
                figures.append(self._he_factor_panel(part, *values[:3], dict(zip(fixed, values[3:]))))
        return figures

    def _he_factor_panel(self, part: pd.DataFrame, act: str, init: str, depth: int, fixed: dict) -> Figure:
        self._check_pooling(part, ["activation", "init_name", "depth", "init.factor", *fixed])
        factor = part.set_index("job")["init.factor"].map("{:g}".format)
        order = sorted(factor.unique(), key=float)
        style = {"hue": "factor", "hue_order": order, "palette": sns.color_palette("flare", len(order)),
                 "errorbar": t95}
        ep = self._curve_frame(self.epochs[self.epochs["job"].isin(factor.index)])
        ep["factor"] = ep["job"].map(factor)
        layers = self.layers[self.layers["job"].isin(factor.index)]
        layers = layers.assign(factor=layers["job"].map(factor),
                               end=layers["epoch"] == layers.groupby("job")["epoch"].transform("max"))
        fig, axes = plt.subplots(3, 2, figsize=(WIDTH, 7.5), layout="constrained")
        for ax, metric in zip(axes[0], ("accuracy", "loss")):
            sns.lineplot(ep[ep["metric"] == metric], x="epoch", y="value", style="split",
                         style_order=["test", "train"], ax=ax, legend=metric == "loss", **style)
            ax.set(ylabel=metric, title=f"{metric}: test solid, train dashed")
        self._accuracy_and_loss_axes(*axes[0])
        sns.move_legend(axes[0, 1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
        names = {"act_std": "post-activation std", "grad_norm": "weight-grad norm"}
        for row, stat in zip(axes[1:], names):
            for ax, (when, rows) in zip(row, (("at init", layers["epoch"] == 0),
                                              ("end of training", layers["end"]))):
                data = layers[rows & (layers[stat] > 0) & np.isfinite(layers[stat])]
                if stat == "act_std":
                    data = data[data["layer"] <= data["depth"]]
                if data.empty:
                    raise NothingToDraw(f"he_factor {act} {init} depth {depth}: no positive finite {stat} {when}")
                sns.lineplot(data, x="layer", y=stat, ax=ax, legend=False, marker="o", **{**style, **LOG_BAND})
                ax.set(yscale="log", ylabel=names[stat], title=f"{names[stat]}, {when}")
                self._plain_log_ticks(ax.yaxis)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        mode = fixed.get("init.mode", part["init.mode"].iloc[0] if "init.mode" in part else "fan_in")
        rest = _context_text({k: v for k, v in fixed.items() if k != "init.mode"})
        rule = f"Var(W) = factor / {mode}" + (f", {rest}" if rest else "")
        fig.suptitle(f"{act}, {init}, depth {depth}: {rule}")
        name = f"he_factor_{act}_{init}_depth{depth}" + "".join(f"_{v}" for v in fixed.values())
        return self._save(fig, name, (
            f"{init} with {rule} for factor {', '.join(order)} ({act}, depth {depth}): accuracy and loss per "
            f"epoch, post-activation std and weight-gradient norm per layer at init and after training."), "He factor")
