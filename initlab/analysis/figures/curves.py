"""Training curves: accuracy and loss per epoch, one figure per activation and per init."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from initlab.analysis.figures.base import LOG_BAND, Figure, integer_ticks, panel_size, t95
from initlab.analysis.figures.facets import Wrap

LEGEND_ROW = 0.24  # inches a legend entry takes


class CurveFigures:
    def curves_by_activation(self) -> list[Figure]:
        return self.curves("activation")

    def curves_by_init(self) -> list[Figure]:
        return self.curves("init")

    def curves(self, by: str) -> list[Figure]:
        """Figures 1 and 2: accuracy and loss vs epoch, one figure per ``by``, a row per depth.
        Accuracy: mean over seeds with the t-interval; loss (log axis): the geometric mean with the
        interval of the logs, as on every log axis (seaborn aggregates in the scale of an axis that is
        already logarithmic): a linear band there dips below 0."""
        hue = "init" if by == "activation" else "activation"
        self._check_pooling(self.epochs, [by, hue, "depth", "epoch"])
        ep = self._curve_frame(self.epochs)
        ep = ep[(ep["metric"] == "accuracy") | (ep["value"] > 0)]
        figures = []
        for name in self.order[by]:
            part = ep[ep[by] == name]
            if not part["value"].notna().any():  # drawn, it was empty axes and a legend without entries
                self._not_drawn_one(f"curves_{by}_{name}.png", f"no finite accuracy or loss: every {by}={name} run "
                                                               f"diverged at init")
                continue
            depths = sorted(part["depth"].unique())
            fig, axes = plt.subplots(len(depths), 2, squeeze=False, sharex=True, sharey="col", layout="constrained",
                                     figsize=(6.4, 0.4 + 1.7 * len(depths)))
            for row, depth in zip(axes, depths):
                row[1].set_yscale("log")  # before drawing: seaborn then averages the logs (LOG_BAND's rule)
                for ax, metric in zip(row, ("accuracy", "loss")):
                    data = part[(part["depth"] == depth) & (part["metric"] == metric)]
                    sns.lineplot(data, x="epoch", y="value", **self._hue(hue), style="split",
                                 style_order=["test", "train"], ax=ax, legend=ax is axes[0, 1], errorbar=t95)
                    ax.set(xlabel="", ylabel="")
                self._accuracy_and_loss_axes(*row)
                row[1].yaxis.set_label_position("right")
                row[1].set_ylabel(f"depth {depth}", rotation=270, labelpad=12)
            axes[0, 0].set_title("accuracy")
            axes[0, 1].set_title("loss")
            for ax in axes[-1]:
                ax.set_xlabel("epoch")
                ax.xaxis.set_major_locator(integer_ticks())
            self._legend_right(fig, axes[0, 1])
            fig.suptitle(f"{by} {name}")
            runs = self.epochs[self.epochs[by] == name]
            one = runs.groupby([hue, "depth"])["job"].nunique().max() == 1
            seeds = ("One run per line (one seed: no interval)." if one else
                     "Accuracy: mean over seeds with the 95% t-interval; loss (log scale): geometric mean with "
                     "the interval of the logs.")
            figures.append(self._save(fig, f"curves_{by}_{name}", (
                f"{by} {name}: test (solid) and train (dashed) accuracy and loss per epoch, one line per {hue}, "
                f"one row per depth; epoch 0 is the untrained network. {seeds} Train values are "
                f"over each epoch's steps as the weights changed, test values after the epoch."
                + self._uneven_seeds_note(runs, [hue, "depth"])),
                f"Training curves by {by}"))
        return figures

    @staticmethod
    def _legend_right(fig: plt.Figure, ax: plt.Axes) -> None:
        """``ax``'s legend moved right of the panels, the figure made tall enough for all of it: a
        legend of nine activations (13 entries) hung below a two-depth figure, and the constrained
        layout shrank the panels to nothing to make room."""
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        fig.legend(handles, labels, loc="outside right center", frameon=False)  # clear of the suptitle
        fig.set_figheight(max(fig.get_figheight(), 0.8 + LEGEND_ROW * len(labels)))

    def grad_norm_per_epoch(self) -> list[Figure]:
        """Total gradient norm per epoch (epochs.csv ``grad_norm``: the L2 norm over all parameters
        per step, averaged over the epoch's steps, as the CNN study measures it), one line per init
        (and colour per model when several), a panel per activation, a row per detail depth.

        Epoch 0 (no step yet) has no value. Jobs recorded before ``grad_norm`` existed draw nothing.
        """
        if "grad_norm" not in self.epochs or not (self.epochs["grad_norm"] > 0).any():
            return []
        data = self.epochs[self.epochs["depth"].isin(self.detail) & (self.epochs["grad_norm"] > 0)]
        data = data[np.isfinite(data["grad_norm"])]
        several = len(self.models) > 1
        self._check_pooling(data, ["model", "activation", "init", "depth", "epoch"])
        inits, acts = self._present("init", data), self._present("activation", data)
        if several:
            models = [m for m in self.models if m in set(data["model"])]
            style = {"hue": "model", "hue_order": models,
                     "palette": dict(zip(models, sns.color_palette("colorblind", len(models)))),
                     "style": "init", "style_order": inits}
        else:
            style = {**self._hue("init"), "hue_order": inits, "style": "init", "style_order": inits,
                     "dashes": self.dashes}
        depths = sorted(data["depth"].unique())
        wrap = Wrap(acts, depths)
        width, height = panel_size(wrap.per_row, 2.2)
        g = sns.relplot(wrap.place(data, "activation", "depth"), kind="line", x="epoch", y="grad_norm", **style,
                        **LOG_BAND, **wrap.facets, height=height, aspect=width / height, facet_kws={"sharey": True})
        self._legend_below(g)
        wrap.label(g, "epoch", ["total grad norm"], [f"depth {d}" for d in depths])
        for ax in g.axes.flat:
            ax.set_yscale("log")
            self._plain_log_ticks(ax.yaxis)
            ax.xaxis.set_major_locator(integer_ticks())
        lines = "one colour per model, one dash per init" if several else "one line per init"
        self._fit_panel_text(g, height)
        return [self._save(g.figure, "grad_norm_per_epoch", (
            f"Total gradient norm (L2 over all parameters) per training step, averaged over each epoch, {lines}; "
            f"a panel per activation, a row per depth ({', '.join(map(str, self.detail))}); log scale, "
            f"geometric mean over seeds."), "Training curves")]
