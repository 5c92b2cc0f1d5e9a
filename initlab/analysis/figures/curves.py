"""Training curves: accuracy and loss per epoch, one figure per activation and per init."""

from __future__ import annotations


import numpy as np
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from initlab.analysis.figures.base import LOG_BAND, WIDTH, Figure, t95


class CurveFigures:
    def curves_by_activation(self) -> list[Figure]:
        return self.curves("activation")

    def curves_by_init(self) -> list[Figure]:
        return self.curves("init")

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
        width = min(3.5, WIDTH / len(acts))
        height = min(2.2, width)
        g = sns.relplot(data, kind="line", x="epoch", y="grad_norm", **style, **LOG_BAND, col="activation",
                        col_order=acts, row="depth", height=height, aspect=width / height,
                        facet_kws={"margin_titles": True, "sharey": True})
        self._legend_below(g)
        g.set_titles(row_template="depth {row_name}", col_template="{col_name}")
        g.set_axis_labels("epoch", "total grad norm")
        for ax in g.axes.flat:
            ax.set_yscale("log")
            self._plain_log_ticks(ax.yaxis)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        lines = "one colour per model, one dash per init" if several else "one line per init"
        return [self._save(g.figure, "grad_norm_per_epoch", (
            f"Total gradient norm (L2 over all parameters) per training step, averaged over each epoch, {lines}; "
            f"a panel per activation, a row per depth ({', '.join(map(str, self.detail))}); log scale, "
            f"geometric mean over seeds."), "Training curves")]
