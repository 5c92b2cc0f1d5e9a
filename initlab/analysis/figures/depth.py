"""Run-level outcomes against depth, and the whole grid at a glance."""

from __future__ import annotations

from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle

from initlab.analysis.figures.base import WIDTH, Figure, NothingToDraw, integer_ticks, panel_size, t95, wrap_lines
from initlab.analysis.figures.facets import Wrap



class DepthFigures:
    # --- depth and the grid -------------------------------------------------------------------
    def _vs_depth(self, data: pd.DataFrame, rows: dict[str, str], name: str, caption: str,
                  refline: Optional[float] = None, ylim: Optional[tuple] = None) -> Figure:
        """Per-run values vs depth, one line per init, a column per activation (and model, with
        several), a row per measure; with preset arms (Tables.presets), one line per arm in one column.
        Raises NothingToDraw where no value is finite (every run diverged: no final accuracy)."""
        if not data["value"].notna().any():
            diverged = (self.runs["status"] == "diverged").all()
            raise NothingToDraw(f"no finite {' or '.join(rows.values())}"
                                + (": every run diverged" if diverged else ""))
        if self.tables.presets:
            self._check_pooling(data, ["arm", "depth"])
            data, col, acts = data.assign(panel=""), "panel", [""]
            lines = self._arm_lines(data)
        else:
            self._check_pooling(data, ["activation", "model", "init", "depth"])
            data, col, acts = self._panels(data)
            inits = self._present("init", data)
            lines = {"hue": "init", "hue_order": inits, "palette": self.palette["init"], "style": "init",
                     "style_order": inits, "dashes": self.dashes}
        wrap = Wrap(acts, list(rows))
        width, height = panel_size(wrap.per_row, 1.9)
        g = sns.relplot(wrap.place(data, col, "measure"), kind="line", x="depth", y="value", **lines, markers=True,
                        **wrap.facets, errorbar=t95, height=height, aspect=width / height,
                        facet_kws={"sharey": "row" if wrap.blocks == 1 else True})
        self._legend_below(g)
        wrap.label(g, "depth", list(rows.values()))
        depths = np.array(sorted(self.runs["depth"].unique()))
        spread = np.diff(depths).min() / np.ptp(depths) if len(depths) > 1 else 1.0
        for ax in g.axes.flat:  # every depth labelled, unless the labels would collide
            if len(depths) <= 8 and spread * width > 0.25:  # inches between neighbouring labels
                ax.set_xticks(depths)
            else:
                ax.xaxis.set_major_locator(integer_ticks(5))
        if name.startswith("epochs"):
            for ax in g.axes.flat:
                ax.yaxis.set_major_locator(integer_ticks(4))
        if refline is not None:
            g.refline(y=refline, color="grey", linestyle=":")
        if ylim:
            g.set(ylim=ylim)
        self._fit_panel_text(g, height)
        return self._save(g.figure, name, caption, "Accuracy and depth")

    @property
    def _arm(self) -> list[str]:
        """The arm column where preset arms vary (Tables.presets), for the frames the lines are drawn from."""
        return ["arm"] if self.tables.presets else []

    def _arm_lines(self, data: pd.DataFrame) -> dict:
        """relplot's line arguments for one line per preset arm, in the runs' order, dashed apart."""
        arms = [a for a in dict.fromkeys(self.runs["arm"]) if a in set(data["arm"])]
        palette = dict(zip(arms, sns.color_palette("colorblind", len(arms))))
        return {"hue": "arm", "hue_order": arms, "palette": palette, "style": "arm", "style_order": arms}

    def accuracy_vs_depth(self) -> list[Figure]:
        """Figure 5: final train and test accuracy vs depth (the reference study's headline plot)."""
        rows = {"final_train_acc": "final train acc", "final_test_acc": "final test acc"}
        data = self.runs.melt(id_vars=["job", "activation", "model", "init", "depth", *self._arm], value_vars=list(rows), var_name="measure")
        chance = self.runs["chance"].dropna().unique()
        return [self._vs_depth(data, rows, "accuracy_vs_depth", (
            "Final train (top) and test (bottom) accuracy vs depth, "
            + ("one line per arm" if self._arm else "one line per init, one column per activation"
               + (" and model" if len(self.models) > 1 else ""))
            + ("; the dotted line is chance" if len(chance) == 1 else "")
            + ". Train accuracy is counted over the last epoch's steps as the weights changed, test accuracy "
              "after it, so train can sit below test early in training."),
            refline=chance[0] if len(chance) == 1 else None, ylim=(0, 1.02))]

    def epochs_to_95(self) -> list[Figure]:
        """Figure 6: how fast trainable runs converge, in both studies' definitions."""
        rows = {"epochs_to_95_peak_train": "epochs to 95%\nof peak train acc",
                "epochs_to_95_final_test": "epochs to 95%\nof final test acc"}
        data = self.runs[self.runs["trainable"].fillna(False).astype(bool)]
        data = data.melt(id_vars=["job", "activation", "model", "init", "depth", *self._arm], value_vars=list(rows), var_name="measure")
        if data["value"].notna().sum() == 0:
            return []
        return [self._vs_depth(data, rows, "epochs_to_95_vs_depth", (
            "Epochs until train accuracy first reaches 95% of its peak (top, as the reference study) and "
            "test accuracy 95% of its final value (bottom, as the CNN study); trainable runs only."))]

    def grid(self) -> list[Figure]:
        """Figure 7: the whole grid, a panel per activation, init x depth cells; † diverged, hatched
        untrainable. Cells keep their size (about 0.42 x 0.3 inches), so the figure grows with the
        grid: as many panels a row as fit in about 8 inches (one for the full grid), more rows below."""
        runs, col, acts = self._panels(self.runs)
        cells = runs.groupby(["depth", "init", col]).agg(
            acc=("final_test_acc", "mean"), diverged=("status", lambda s: (s == "diverged").any()),
            trainable=("trainable", "mean")).reset_index()
        depths = sorted(cells["depth"].unique())
        inits = self._present("init", self.runs)
        if len(inits) == len(acts) == 1:  # a single cell per depth: figure 5 says it better
            return []
        self._check_pooling(self.runs, ["depth", "init", "activation", "model"])
        cell_w, cell_h = 0.42, 0.3
        label_w = 0.09 * max(len(i) for i in inits) + 0.3  # the init names left of the first column
        # as wide as the longest word of a title (titles wrap between words only): "transform=none" ran into
        # its neighbours' titles over a one-depth panel
        longest = max(len(word) for act in acts for word in str(act).split())
        panel_w = max(cell_w * len(depths), 0.9, 0.085 * longest + 0.05)
        ncols = max(1, min(len(acts), int((WIDTH + 1.0 - label_w - 0.9) // (panel_w + 0.3))))
        nrows = -(-len(acts) // ncols)
        fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=True, layout="constrained",
                                 figsize=(label_w + ncols * (panel_w + 0.3) + 0.9,
                                          nrows * (cell_h * len(inits) + 0.95) + 0.2))
        mesh = None
        for ax, act in zip(axes.flat, acts):
            cell = cells[cells[col] == act].set_index(["init", "depth"])
            acc = cell["acc"].unstack().reindex(index=inits, columns=depths)
            diverged = cell["diverged"].unstack().reindex_like(acc).eq(True)
            text = acc.map(lambda v: "" if pd.isna(v) else f"{v:.2f}".lstrip("0"))
            text = text.where(~diverged, text + "†")
            sns.heatmap(acc, ax=ax, vmin=0, vmax=1, cmap="mako", annot=text, fmt="", cbar=False,
                        annot_kws={"fontsize": 7.5}, linewidths=0.5, linecolor="white",
                        xticklabels=[f"{d:g}" for d in depths], yticklabels=inits)
            mesh = ax.collections[0]
            untrainable = cell["trainable"].astype(float).unstack().reindex_like(acc) < 0.5
            for i, j in zip(*np.nonzero(untrainable.to_numpy())):
                ax.add_patch(Rectangle((j, i), 1, 1, fill=False, hatch="//", edgecolor="0.55", lw=0))
            # seaborn annotates no NaN cell: a cell where every seed diverged gets its mark here, over the hatch
            for i, j in zip(*np.nonzero((diverged & acc.isna()).to_numpy())):
                ax.text(j + 0.5, i + 0.5, "†", ha="center", va="center", fontsize=9, color="0.15",
                        bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"})
            ax.set_title(wrap_lines(act, max(6, int(panel_w / 0.085))), fontsize="medium")  # at the panel's width
            ax.set_xlabel("depth")
            ax.set_ylabel("")
            ax.tick_params(axis="x", labelrotation=0 if len(depths) * 3 * 0.09 < panel_w else 90)
            ax.tick_params(axis="y", labelrotation=0)
        for ax in axes.flat[len(acts):]:
            ax.set_visible(False)
        fig.colorbar(mesh, ax=axes, label="final test accuracy", shrink=min(1.0, 2.5 / fig.get_figheight() + 0.3))
        return [self._save(fig, "grid_test_accuracy", (
            "Final test accuracy (mean over seeds) for every init (rows) and depth (columns), one panel per "
            f"activation{' and model' if len(self.models) > 1 else ''}; hatched: not trainable (at most chance + "
            "margin); †: diverged in at least one seed (alone in its cell: in every seed, so no accuracy)."),
            "The grid at a glance")]

    def plain_vs_residual(self) -> list[Figure]:
        """Test accuracy vs depth, a line per model: the depth study's plain-vs-residual comparison.

        Only drawn when the runs hold several models; a panel per activation (columns) and init
        (rows) where those vary. Points are the mean over seeds, bands the 95% t-interval.
        """
        if len(self.models) < 2:
            return []
        if self.tables.presets:  # the arms side by side: one line each, one panel
            self._check_pooling(self.runs, ["arm", "depth"])
            runs, acts, inits = self.runs.assign(activation="", init=""), [""], [""]
            lines = self._arm_lines(runs)
        else:
            self._check_pooling(self.runs, ["model", "activation", "init", "depth"])
            runs = self.runs
            acts, inits = self._present("activation", runs), self._present("init", runs)
            palette = dict(zip(self.models, sns.color_palette("colorblind", len(self.models))))
            lines = {"hue": "model", "hue_order": self.models, "palette": palette, "style": "model",
                     "style_order": self.models, "dashes": False}
        wrap = Wrap(acts, inits)
        width, height = panel_size(wrap.per_row, 2.6)
        g = sns.relplot(wrap.place(runs, "activation", "init"), kind="line", x="depth", y="final_test_acc", **lines,
                        markers=True, **wrap.facets, errorbar=t95, height=height, aspect=width / height)
        self._legend_below(g)
        wrap.label(g, "depth", ["final test accuracy"], inits if inits != [""] else [])
        depths = np.array(sorted(self.runs["depth"].unique()))
        for ax in g.axes.flat:
            if len(depths) > 3 and depths.min() > 0 and depths.max() / depths.min() >= 10:
                ax.set_xscale("log")
                ax.xaxis.set_minor_locator(plt.NullLocator())
                ax.set_xticks(depths, [f"{d:g}" for d in depths])
            else:
                ax.set_xticks(depths)
            ax.set_ylim(0, 1.02)
        chance = self.runs["chance"].dropna().unique()
        if len(chance) == 1:
            g.refline(y=chance[0], color="grey", linestyle=":")
        self._fit_panel_text(g, height)
        return [self._save(g.figure, "plain_vs_residual", (
            "Final test accuracy vs depth, one line per "
            + ("arm (" + ", ".join(self.tables.presets) + ")" if self.tables.presets else "model") + " (mean over seeds, band: 95% t-interval), as the "
            "depth study compares plain and residual networks" + ("; a panel per activation" if len(acts) > 1 else "")
            + ("; a row per init" if len(inits) > 1 else "") + ("; the dotted line is chance." if len(chance) == 1
                                                                 else ".")), "Accuracy and depth")]
