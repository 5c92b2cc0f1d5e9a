"""The learning rate per epoch (epochs.csv ``lr``), drawn only when a scheduler varied it in some run."""

from __future__ import annotations

import numpy as np
import seaborn as sns

from initlab.analysis.figures.base import Figure, integer_ticks, panel_size
from initlab.analysis.figures.facets import Wrap


def lr_varies(epochs) -> bool:
    """Whether any run's lr differs between its epochs (a scheduler or warmup changed it)."""
    return bool(len(epochs)) and bool((epochs.groupby("job")["lr"].nunique() > 1).any())


class ScheduleFigures:
    def lr_per_epoch(self) -> list[Figure]:
        """The lr in force during each epoch, one line per run (runs with a plateau scheduler differ
        by seed, so they are not averaged), a colour per init, a panel per activation, a row per
        detail depth; log scale when every lr is positive. Nothing when no run's lr varies."""
        if not lr_varies(self.epochs):
            return []
        data = self.epochs[self.epochs["depth"].isin(self.detail)]
        acts = self._present("activation", data)
        depths = sorted(data["depth"].unique())
        wrap = Wrap(acts, depths)
        width, height = panel_size(wrap.per_row, 2.2)
        g = sns.relplot(wrap.place(data, "activation", "depth"), kind="line", x="epoch", y="lr", units="job",
                        estimator=None, **{**self._hue("init"), "hue_order": self._present("init", data)},
                        style="init", style_order=self._present("init", data), dashes=self.dashes,
                        **wrap.facets, height=height, aspect=width / height, facet_kws={"sharey": True})
        self._legend_below(g)
        wrap.label(g, "epoch", ["lr"], [f"depth {d}" for d in depths])
        positive = bool((data["lr"] > 0).all() and np.isfinite(data["lr"]).all())
        for ax in g.axes.flat:
            if positive:
                ax.set_yscale("log")
                self._plain_log_ticks(ax.yaxis)
            ax.xaxis.set_major_locator(integer_ticks())
        self._fit_panel_text(g, height)
        return [self._save(g.figure, "lr_per_epoch", (
            f"Learning rate in force during each epoch (epoch 0: the initial lr), one line per run, a colour per "
            f"init, a panel per activation, a row per depth ({', '.join(map(str, self.detail))})"
            f"{'; log scale' if positive else ''}."), "Training curves")]
