"""The He-factor study: one init family with its gain factor varied."""

from __future__ import annotations


import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from initlab.analysis.figures.base import (LOG_BAND, WIDTH, Figure, NothingToDraw, _context_text, integer_ticks, shown,
                                           t95)
from initlab.analysis.tables import value_text


class HeFactorFigures:
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
        factor = part.set_index("job")["init.factor"].map(value_text)
        order = sorted(factor.unique(), key=float)
        style = {"hue": "factor", "hue_order": order, "palette": sns.color_palette("flare", len(order)),
                 "errorbar": t95}
        ep = self._curve_frame(self.epochs[self.epochs["job"].isin(factor.index)])
        ep["factor"] = ep["job"].map(factor)
        layers = self.layers[self.layers["job"].isin(factor.index)]
        layers = layers.assign(factor=layers["job"].map(factor),
                               end=layers["epoch"] == self._final_epoch(layers))
        fig, axes = plt.subplots(3, 2, figsize=(WIDTH, 7.5), layout="constrained")
        for ax, metric in zip(axes[0], ("accuracy", "loss")):
            data = ep[ep["metric"] == metric]
            band = LOG_BAND if metric == "loss" else {}  # the log axis: geometric mean, interval of the logs
            sns.lineplot(data if metric == "accuracy" else data[data["value"] > 0], x="epoch", y="value",
                         style="split", style_order=["test", "train"], ax=ax, legend=metric == "loss",
                         **{**style, **band})
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
                ax.xaxis.set_major_locator(integer_ticks())
        mode = fixed.get("init.mode", part["init.mode"].iloc[0] if "init.mode" in part else "fan_in")
        rest = _context_text({k: v for k, v in fixed.items() if k != "init.mode"})
        rule = f"Var(W) = factor / {mode}" + (f", {rest}" if rest else "")
        fig.suptitle(f"{act}, {init}, depth {depth}: {rule}")
        name = f"he_factor_{act}_{init}_depth{depth}" + "".join(f"_{shown(v)}" for v in fixed.values())
        return self._save(fig, name, (
            f"{init} with {rule} for factor {', '.join(order)} ({act}, depth {depth}): accuracy and loss per "
            f"epoch, post-activation std and weight-gradient norm per layer at init and after training."), "He factor")
