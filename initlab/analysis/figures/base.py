"""What every figure family shares: colours, order, saving, the pooling check and the drawing loop.

Each init and each activation keeps one colour in every figure, its choice's (initlab.choices);
related inits share a hue family (he blue/cyan, xavier green/olive, normal orange/brown) and
differ in dashes (the init choice's too). With several seeds a line is the mean and its band the
95% t-interval (on log axes, of the logs). Figures are at most 7 inches wide with 10-11 pt text,
so they stay legible printed one column wide; figures with a panel or cell per choice grow with
the grid instead of shrinking their text.

A figure pools runs only across seeds: every other varied choice is a line, a panel, or fixed per
figure (Plotter.all draws the whole set once per value of the keys no figure shows, named in the
title and file name), and each figure checks this before drawing (PoolingError). Runs of different
models are never pooled either: with several models, the families marked ``across_models`` are drawn
once with the model as a panel or a line, and every family once per model. On log axes, exact
zeros are drawn at the axis floor with their own marker; a figure that cannot be drawn is listed
with the reason (Plotter.not_drawn), never dropped silently.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import re
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from scipy import stats  # noqa: E402

from initlab import choices  # noqa: E402
from initlab.analysis import search  # noqa: E402
from initlab.analysis.log_ticks import log_ticks  # noqa: E402
from initlab.analysis.tables import ACTIVATIONS, INITS, Tables, shown  # noqa: E402
from initlab.names import NAME_MAX, fitted  # noqa: E402
from initlab.records import write_bytes_atomic  # noqa: E402

THEME = {"context": "paper", "style": "whitegrid", "font_scale": 1.25}  # seaborn.set_theme arguments

log = logging.getLogger(__name__)
# "findfont: Font family ['STIXGeneral'] not found. Falling back to DejaVu Sans." once per glyph (†, ≤) that
# mathtext looks up: the fallback draws it, and analyze.py's log is for the figures' own warnings
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

INIT_COLORS = {name: init.color for name, init in choices.INITS.items()}
ACTIVATION_COLORS = {name: act.color for name, act in choices.ACTIVATIONS.items()}
# Line dashes per init, so lines that coincide (xavier and orthogonal) stay apart in print;
# inits with no choice (records of a removed one) get OTHER_DASHES.
INIT_DASHES = {name: init.dashes for name, init in choices.INITS.items()}
OTHER_DASHES = (4, 1, 1, 1)
# Markers per init (in the study's order), on per-layer lines: lines that coincide (normal and
# trunc_normal) stay visible as alternating markers. "v" is left for exact zeros (ZERO_MARKER).
INIT_MARKERS = ("o", "s", "^", "D", "P", "X", "*", "<", ">", "h")
WIDTH = 7.0  # inches
KEPT = 0.8  # the share of its asked-for height a facet panel keeps under wrapped titles and x axes
ROW_PAD = 0.08  # inches between what hangs below one row of panels and what stands above the next
FLOOR = 1e-6  # log-scale heatmaps clip below this (a zero-init layer has std 0)
TINY = 1e-300  # the lowest floor a log axis gets (float64 underflows a little below)
ZERO_MARKER = {"marker": "v", "markersize": 6, "markerfacecolor": "none", "markeredgewidth": 1.2, "linestyle": ""}
ZERO_LABEL = "value exactly 0"


@dataclass
class Figure:
    path: str  # the PNG, relative to the output folder
    caption: str
    section: str


@dataclass(frozen=True)
class Family:
    """One figure family: the method that draws it, the files it writes (as README.md lists them:
    the report names a figure not drawn by its file) and whether it draws several models together."""

    method: str
    files: str
    across_models: bool = False
    whole_sweep: bool = False  # drawn once over every run, before runs are split by context or model


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
    return ", ".join(f"no {k}" if pd.isna(v) else f"{k}={shown(v)}" for k, v in values.items())


def _file_name(name: str, longest_suffix: int) -> str:
    """``name`` as one file name: runs of characters other than word characters, ``.``, ``=``,
    ``-`` and ``+`` (a number's exponent: 1e+06, as titles write it) made ``_``, and, where it
    would pass the file system's 255 bytes with its ``.suffix``, cut to a prefix and a hash of
    the whole (initlab.names.fitted): a figure named by the context of several sweeps (every
    model parameter) failed with 'File name too long'."""
    return fitted(re.sub(r"[^\w.=+-]+", "_", name), limit=NAME_MAX - 1 - longest_suffix)


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


def integer_ticks(nbins: int | str = "auto") -> MaxNLocator:
    """The one tick policy of a count axis (epochs, layers, depths, trials): whole numbers only,
    also where every value is equal (matplotlib's default falls back to 3.90, 4.05, 4.20 when
    fewer than two integers fit)."""
    return MaxNLocator(nbins=nbins, integer=True, min_n_ticks=1)


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
                               spectra=keep(tables.spectra), steps=keep(tables.steps),
                               distributions=keep(tables.distributions))


class PlotterBase:
    """Draws every figure the tables support into ``out/figures``; returns them with captions.

    Its frames name the display labels ``init``, ``activation`` and ``model`` ("he_normal
    factor=0.5", "resmlp norm=batchnorm" where a parameter varies) and keep the option names as
    ``init_name``, ``activation_name`` and ``model_name``. The figure families come from the
    registry (initlab.analysis.figures.FAMILIES), in report order.
    """

    families: tuple[Family, ...] = ()

    @property
    def files(self) -> dict[str, str]:
        """Figure family (method) -> the files it writes."""
        return {f.method: f.files for f in self.families}

    def __init__(self, tables: Tables, out: Path, formats: tuple[str, ...] = ("png",),
                 detail_depths: Optional[list[int]] = None, strict: bool = False, context: Optional[dict] = None):
        """``strict``: a figure that fails raises instead of being listed in ``not_drawn`` (tests);
        ``context``: the values of keys no figure shows that every run here shares (named in titles)."""
        self.tables, self.out, self.detail_depths, self.strict = tables, out, detail_depths, strict
        self.context = context or {}
        self.not_drawn: list[NotDrawn] = []
        self.written: list[str] = []  # every file saved into ``dir``, all formats (remove_stale)
        self.kept: Optional[dict[str, plt.Figure]] = None  # a dict: _save keeps figures open in it (tests)
        self.dpi = 200  # of the PNGs (tests draw coarser ones; sizes are in inches either way)
        self.keys, self.dir = tables.keys, out / "figures"
        self.formats = tuple(dict.fromkeys(("png", *formats)))
        self.dir.mkdir(parents=True, exist_ok=True)
        names = {"init": "init_name", "activation": "activation_name", "model": "model_name",
                 "init_label": "init", "activation_label": "activation", "model_label": "model"}
        self.runs, self.epochs, self.layers = (f.rename(columns=names) for f in
                                               (tables.runs, tables.epochs, tables.layers))
        self.models = list(dict.fromkeys(self.runs["model"]))
        self.jacobian, self.spectra, self.steps, self.distributions = (
            None if f is None else f.rename(columns=names)
            for f in (tables.jacobian, tables.spectra, tables.steps, tables.distributions))
        depths = sorted(self.runs["depth"].unique())
        self.detail = [d for d in (detail_depths or depths[-1:]) if d in depths]
        self.order = {g: self._levels(g) for g in ("init", "activation")}
        self.palette = {g: self._palette(g) for g in ("init", "activation")}
        names = self.runs.drop_duplicates("init").set_index("init")["init_name"]
        self.dashes = {label: INIT_DASHES.get(names[label], OTHER_DASHES)
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
            name += "_" + "_".join(f"no_{k}" if pd.isna(v) else f"{k}={shown(v)}" for k, v in self.context.items())
            title = fig._suptitle
            if title is not None and title.get_text():
                title.set_text(f"{title.get_text()}; {context}")
            else:
                fig.suptitle(context, y=1.0, va="bottom")
            caption = f"{context}. {caption}"
        name = _file_name(name, max(len(fmt) for fmt in self.formats))
        mark_lone_points(fig)
        if f"{name}.{self.formats[0]}" in self.written:  # values that read alike (0.3, 0.30000000000000004)
            log.warning("%s: a second figure of that name (its values read alike); written as %s_2 and on",
                        name, name)
            name = next(f"{name}_{k}" for k in itertools.count(2) if f"{name}_{k}.{self.formats[0]}" not in self.written)
        for fmt in self.formats:
            fig.savefig(self.dir / f"{name}.{fmt}", dpi=self.dpi, bbox_inches="tight")
            self.written.append(f"{name}.{fmt}")
        if self.kept is not None:
            self.kept[name] = fig
        else:
            plt.close(fig)
        return Figure(f"figures/{name}.png", caption, section)

    def _check_pooling(self, data: pd.DataFrame, by: list[str]) -> None:
        """Raise PoolingError if rows that one line, cell or panel (``by``) averages come from runs
        that differ in a varied key other than the seed. ``data`` has a ``job`` column. A preset
        group's choice is no key of its own: the values it sets are."""
        columns = {"init": "init_name", "activation": "activation_name", "model": "model_name"}
        varied = [columns.get(k, k) for k in self.keys if k != "seed" and k not in self.tables.presets]
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

        With several models (``model`` and its options, e.g. ``model.norm``), the families that
        draw models side by side come first, then every family once per model. A figure that fails
        is logged and listed in ``not_drawn`` with the reason (re-raised when ``strict``); the other
        figures still count. The ``whole_sweep`` families come first, drawn once over every run; the
        others draw, of an Optuna search's trials, only the best one (``search.shown_jobs``).
        """
        if self.context:
            return self._split()
        whole = self._all_here([f for f in self.families if f.whole_sweep])
        if self.trials.empty:
            return whole + self._split()
        shown = search.shown_jobs(self.tables.runs, self.trials)  # an Optuna search: its best trial
        return whole + self._sub(self.tables.runs[self.tables.runs["job"].isin(shown)], {})._split()

    @functools.cached_property
    def trials(self) -> pd.DataFrame:
        """The trials of the Optuna searches the runs belong to (initlab.analysis.search.trials); often empty."""
        return search.trials(self.tables)

    def _split(self) -> list[Figure]:
        """Every family but the ``whole_sweep`` ones, once per context (see ``all``)."""
        families = [f for f in self.families if not f.whole_sweep]
        extra = [k for k in self.tables.extra_keys if k in self.runs and k.split(".")[0] != "model"
                 and k not in self.context]
        if extra:
            figures = []
            for values, part in self.tables.runs.groupby(extra, sort=False, dropna=False):
                figures += self._sub(part, dict(zip(extra, values if isinstance(values, tuple) else (values,))))._split()
            return figures
        if len(self.models) <= 1:
            return self._all_here(families)
        figures = self._all_here([f for f in families if f.across_models])
        for model in self.models:  # the comparison families were drawn above
            sub = self._sub(self.tables.runs[self.tables.runs["model_label"] == model], {"model": model})
            figures += sub._all_here([f for f in families if not f.across_models])
        return figures

    def _sub(self, runs: pd.DataFrame, context: dict) -> "PlotterBase":
        """A plotter of the same kind for ``runs`` only, their shared values ``context`` named in titles."""
        sub = type(self)(_subset(self.tables, set(runs["job"])), self.out, self.formats, self.detail_depths,
                         self.strict, {**self.context, **context})
        sub.kept, sub.dpi, sub.not_drawn, sub.written = self.kept, self.dpi, self.not_drawn, self.written
        return sub

    def _all_here(self, families: list[Family]) -> list[Figure]:
        """The figures of one context, drawn in the house theme (THEME), which is undone afterwards:
        drawing never changes matplotlib's global settings for the caller."""
        with matplotlib.rc_context():
            sns.set_theme(**THEME)
            return self._draw(families)

    def _draw(self, families: list[Family]) -> list[Figure]:
        figures = []
        where = f" ({_context_text(self.context)})" if self.context else ""
        with warnings.catch_warnings():  # seaborn's tight_layout vs colour-bar axes; savefig crops anyway
            warnings.filterwarnings("ignore", ".*[Tt]ight.?layout", UserWarning)
            warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="seaborn")
            for family in families:
                try:
                    figures += getattr(self, family.method)()
                except Exception as err:  # the tables and other figures still count; the report says so
                    plt.close("all")
                    if self.strict:
                        raise
                    expected = isinstance(err, (NothingToDraw, PoolingError))
                    reason = str(err) if expected else f"{type(err).__name__}: {err}"
                    reason = (reason.splitlines() or [type(err).__name__])[0]
                    figure = family.files + where
                    log.warning("could not draw %s: %s", figure, reason)
                    self.not_drawn.append(NotDrawn(figure, reason))
        return figures

    def _not_drawn_one(self, figure: str, reason: str) -> None:
        """One figure of a family that draws several is not drawn (the others are): logged and listed
        in ``not_drawn`` with the reason, as a whole family's failure is; raised when ``strict``."""
        if self.strict:
            raise NothingToDraw(f"{figure}: {reason}")
        plt.close("all")
        figure += f" ({_context_text(self.context)})" if self.context else ""
        log.warning("could not draw %s: %s", figure, reason)
        self.not_drawn.append(NotDrawn(figure, reason))

    def _panels(self, data: pd.DataFrame, by: str = "activation") -> tuple[pd.DataFrame, str, list[str]]:
        """A panel column for figures that draw several models side by side: ``by`` alone with one
        model, "<by>, <model>" with several. Returns (data with the column, its name, its order)."""
        order = self._present(by, data)
        if len(self.models) <= 1:
            return data, by, order
        models = [m for m in self.models if m in set(data["model"])]
        labels = [f"{a}, {m}" for m in models for a in order]
        return data.assign(panel=data[by].astype(str) + ", " + data["model"].astype(str)), "panel", labels

    @staticmethod
    def _uneven_seeds_note(rows: pd.DataFrame, line: list[str]) -> str:
        """A caption's sentence where runs averaged into one line (``line``: the columns that tell
        lines apart) end at different epochs: past the earliest end, fewer seeds make the mean."""
        ends = rows.groupby([*line, "job"])["epoch"].max()
        if not (ends.groupby(level=list(range(len(line)))).nunique() > 1).any():
            return ""
        return (" Where a seed's run ended earlier (early stopping or divergence), the later points average "
                "the seeds still training, and one seed draws no band.")

    def _final_epoch(self, rows: pd.DataFrame) -> pd.Series:
        """Per row of ``rows`` (a ``job`` column), the epoch of its run's final model: the restored
        best epoch where early stopping restored one (the tables' final metrics are that epoch's),
        else the run's last epoch in ``rows``."""
        final = rows.groupby("job")["epoch"].transform("max")
        if "restored_best" in self.runs:
            runs = self.runs.set_index("job")
            restored = rows["job"].map(runs["restored_best"].eq(True)).fillna(False).astype(bool)
            final = final.where(~restored, rows["job"].map(runs["best_epoch"]))
        return final

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
        """The shared log-axis tick policy (initlab.analysis.log_ticks): labelled ticks in range, never overlapping."""
        log_ticks(axis)

    def _accuracy_and_loss_axes(self, acc: plt.Axes, loss: plt.Axes) -> None:
        acc.set(ylim=(0, 1), yticks=[0, 0.5, 1])
        loss.set_yscale("log")
        self._plain_log_ticks(loss.yaxis)

    @staticmethod
    def _legend_below(g: sns.FacetGrid) -> None:
        """Under the panels, so that the panels get the full page width."""
        sns.move_legend(g, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, title=None, frameon=False)
        _lay_out(g)

    @staticmethod
    def _fit_panel_text(g: sns.FacetGrid, height: Optional[float] = None) -> None:
        """Wrap each panel's title to the panel's width and its y label and row title to the panel's
        height, as matplotlib measures them, then lay the grid out again; call after the titles and labels
        are set. Six 1.2-inch panels titled "relu, resmlp preact" ran into each other, and "final
        train acc" into the label of the row below; x labels too ("site (forward order)" under
        five panels a row ran into each other). With ``height`` (inches) and several rows, the rows
        are then stacked as ``_stack_rows`` says."""
        fig = g.figure
        renderer = fig.canvas.get_renderer()
        wspace = fig.subplotpars.wspace  # the gap between panels, a share of a panel's width
        for ax in g.axes.flat:
            box = ax.get_window_extent(renderer)
            _fit_text(ax.title, box.width * (1 + 0.9 * wspace), renderer)  # centred: half the gap each side
            _fit_text(ax.xaxis.label, box.width, renderer)  # "site (forward order)"; any overhang widens every gap
            _fit_text(ax.yaxis.label, box.height, renderer)
        _lay_out(g)
        rotated = [(ax, text) for ax in g.axes.flat for text in ax.texts if text.get_rotation() % 180 == 90]
        for ax, text in rotated:  # a row's title right of its last panel (seaborn's margin titles), laid out:
            _fit_row_title(text, ax.get_window_extent(renderer).height, renderer)  # "tanh transform=dks" ran into
        if rotated:  # the next row's title
            _lay_out(g)
        if height and g.axes.shape[0] > 1:
            _stack_rows(g, height)


def _stack_rows(g: sns.FacetGrid, height: float) -> None:
    """Place the grid's rows one under the other, each gap as tall as what hangs into it (the upper
    row's x tick labels and x label, the lower row's titles) plus ROW_PAD, every panel
    max(KEPT x ``height``, its height now) tall, and fit the figure's height to them. A tight
    layout gives every gap the room of the widest: in wrapped grids (initlab.analysis.figures.facets)
    the rows within a block, which share the block's x axis, stood as far apart as the blocks,
    and nine activations x three models made accuracy_vs_depth 22 inches tall.
    The margins above the first row and below the last stay as the tight layout left them."""
    fig = g.figure
    renderer, dpi, old_height = fig.canvas.get_renderer(), fig.dpi, fig.get_figheight()
    rows = [[ax for ax in row if ax.get_visible()] for row in g.axes]
    boxes = [[ax.get_window_extent(renderer) for ax in row] for row in rows]
    # as tight_layout measures: an axis label counts across its axis only (a y label wrapped to the
    # panel's height, _fit_text, hung over its ends and spread a block's rows as far as its blocks)
    drawn = [[ax.get_tightbbox(renderer, for_layout_only=True) for ax in row] for row in rows]
    above = [max(t.y1 - b.y1 for t, b in zip(ts, bs)) / dpi for ts, bs in zip(drawn, boxes)]
    below = [max(b.y0 - t.y0 for t, b in zip(ts, bs)) / dpi for ts, bs in zip(drawn, boxes)]
    top = old_height - max(b.y1 for b in boxes[0]) / dpi
    bottom = min(b.y0 for b in boxes[-1]) / dpi
    panel = max(KEPT * height, min(b.height for bs in boxes for b in bs) / dpi)
    gaps = [below[r - 1] + above[r] + ROW_PAD for r in range(1, len(rows))]
    new_height = top + bottom + sum(gaps) + len(rows) * panel
    fig.set_figheight(new_height)
    y = new_height - top  # inches from the figure's bottom to the current row's top
    for r, row in enumerate(g.axes):
        y -= (gaps[r - 1] if r else 0) + panel
        for ax in row:
            x0, _, width, _ = ax.get_position().bounds
            ax.set_position([x0, y / new_height, width, panel / new_height])


def mark_lone_points(fig: plt.Figure) -> None:
    """Give each drawn point of a marker-less line that has no drawn neighbour a marker of the
    line's colour: a line draws nothing there (a run of one epoch, a value between two gaps), and
    a series of one point vanished from the curve figures.

    A point is drawn when its x and y are finite and, on a log axis, positive."""
    for ax in fig.axes:
        for line in list(ax.lines):
            if line.get_marker() not in (None, "", "None", " ") or line.get_linestyle() in ("None", "", " "):
                continue
            x, y = np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2).T
            drawn = np.isfinite(x) & np.isfinite(y)
            drawn &= (x > 0 if ax.get_xscale() == "log" else True) & (y > 0 if ax.get_yscale() == "log" else True)
            neighbour = np.r_[False, drawn[:-1]] | np.r_[drawn[1:], False]
            lone = drawn & ~neighbour
            if lone.any():
                ax.plot(x[lone], y[lone], linestyle="", marker="o", markersize=max(3.0, 2.5 * line.get_linewidth()),
                        markeredgewidth=0, color=line.get_color(), alpha=line.get_alpha(), zorder=line.get_zorder(),
                        scalex=False, scaley=False)


def panel_size(columns: int, tallest: float) -> tuple[float, float]:
    """(width, height) in inches of each of ``columns`` side-by-side panels within WIDTH: square
    up to ``tallest``, never under 1.5 inches tall, so that six or more narrow panels keep room
    for their lines under wrapped titles."""
    width = min(3.5, WIDTH / columns)
    return width, min(tallest, max(width, 1.5))


def _fit_text(text: matplotlib.text.Text, pixels: float, renderer, inside_words: bool = True) -> None:
    """Wrap ``text`` until its longest line (along the text, so a rotated y label's height) is at
    most ``pixels``: between words first; only where no such wrap fits, inside words too
    ("leaky_\\nrelu", "post-\\nactivation": nine panels a row are 0.8 inches wide), unless not
    ``inside_words`` (then a word a line at most)."""
    original = text.get_text()
    longest = max(map(len, original.split("\n")), default=0)
    for split_words in (False, True) if inside_words else (False,):
        for chars in range(longest, 3, -1):
            text.set_text(wrap_lines(original, chars, split_words))
            box = text.get_window_extent(renderer)
            if (box.height if text.get_rotation() % 180 else box.width) <= pixels:
                return


def _fit_row_title(text: matplotlib.text.Text, pixels: float, renderer) -> None:
    """A row title along a panel's height: wrapped between words to ``pixels``, and where a word
    is still longer, set smaller (down to 70%) rather than split ("trans\\nform=" in four lines
    took half the panel's width)."""
    _fit_text(text, pixels, renderer, inside_words=False)
    size = text.get_fontsize()
    for scale in (0.9, 0.8, 0.7):
        if text.get_window_extent(renderer).height <= pixels:
            return
        text.set_fontsize(size * scale)


def wrap_lines(text: str, chars: int, split_words: bool = False) -> str:
    """``text`` with each of its lines wrapped to ``chars`` characters between words; a longer word
    stays whole ("leaky_relu," is never split as "leaky_relu\\n,") unless ``split_words``."""
    return "\n".join(textwrap.fill(line, chars, break_long_words=split_words, break_on_hyphens=split_words)
                     if line else line for line in text.split("\n"))


def _lay_out(g: sns.FacetGrid) -> None:
    """seaborn's tight layout, with stacked rows kept apart: the top tick label of a row and the
    bottom one of the row above do not touch."""
    g.tight_layout()
    if g.axes.shape[0] > 1:
        g.figure.subplots_adjust(hspace=max(g.figure.subplotpars.hspace, 0.3))


DRAWN = ".drawn.json"  # in figures/: the files the last analysis into the folder drew


def remove_stale(directory: Path, written: list[str]) -> list[str]:
    """Delete the figures an earlier analysis into ``directory`` drew that this one did not (a
    family now not drawn, another --format, another filter), so the folder holds this report's
    figures only; files the analysis never drew are left alone. Records ``written`` in DRAWN.
    Returns the names removed."""
    manifest = directory / DRAWN
    earlier = set(json.loads(manifest.read_text())) if manifest.is_file() else set()
    stale = sorted(earlier - set(written))
    for name in stale:
        (directory / name).unlink(missing_ok=True)
    write_bytes_atomic(manifest, json.dumps(sorted(set(written))).encode())
    return stale
