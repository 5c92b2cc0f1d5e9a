"""Figures that set mean-field predictions (initlab.theory) beside the measurements.

They form the report's Theory section: measured q and backprop signal per layer at init against
the predicted curves, Jacobian singular-value spectra, and the (sigma_w^2, depth) phase diagram
with the 6 xi_c trainability curve. Same palettes and sizes as the other families.
"""

from __future__ import annotations

import logging
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import patheffects
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter, NullLocator

from initlab import theory
from initlab.analysis.figures.base import LOG_BAND, WIDTH, Figure, NothingToDraw, integer_ticks, shown

THEORY = "Theory"  # the report section of these figures
PREDICTION = {"color": "black", "linestyle": (0, (3, 1.5)), "linewidth": 1.2}  # every predicted curve
log = logging.getLogger(__name__)

HALO = [patheffects.withStroke(linewidth=2.2, foreground="white")]  # keeps it visible over dark markers


class TheoryFigures:
    """The theory figures; the report puts them in its Theory section."""

    def _line_kw(self, init: str) -> dict:
        """Colour and dashes of an init for plain matplotlib lines (seaborn's "" means solid)."""
        dashes = self.dashes.get(init, "")
        return {"color": self.palette["init"][init], **({"dashes": dashes} if dashes else {"linestyle": "-"})}

    @staticmethod
    def _short_titles(inits: list[str], names: pd.Series) -> tuple[dict[str, str], str]:
        """Panel titles without the init name when every panel shares it ("factor=1.76"), and that name."""
        shared = set(names[inits])
        if len(shared) != 1 or len(inits) < 2:
            return {i: i for i in inits}, ""
        name = shared.pop()
        return {i: i.removeprefix(name).strip() or name for i in inits}, name

    def _at_init(self, measured: str, predicted: str, hidden_only: bool) -> pd.DataFrame:
        """Layer rows at init with a positive measurement and prediction (log axes), detail depths."""
        if measured not in self.layers or predicted not in self.layers:
            return pd.DataFrame()
        layers = self.layers[(self.layers["epoch"] == 0) & self.layers["depth"].isin(self.detail)]
        if hidden_only:
            layers = layers[layers["layer"] <= layers["depth"]]
        kept = layers[(layers[measured] > 0) & (layers[predicted] > 0)]  # NaN (no prediction) is dropped
        if kept.empty and layers[predicted].notna().any():
            raise NothingToDraw(f"every {measured} or {predicted} at init is 0 or not finite (log axes)")
        return kept

    def _measured_vs_predicted(self, data: pd.DataFrame, measured: str, predicted: str, ylabel: str,
                               name: str, caption: str) -> list[Figure]:
        """Measured (init colour; markers up to depth 30) and predicted (black dashes) per layer, a
        panel per activation x init; more than four inits: a figure per activation, four panels a row;
        runs covering only some of the pairs (deep_plain's arms): a panel per pair present."""
        if data.empty:  # jobs recorded without predictions
            return []
        self._check_pooling(data, ["activation", "init", "depth", "layer"])
        figures = []
        init_names = self.runs.drop_duplicates("init").set_index("init")["init_name"]
        for d in self.detail:
            part = data[data["depth"] == d]
            if part.empty:
                continue
            acts = self._present("activation", part)
            wrap = len(self._present("init", part)) > 4
            for group in ([[a] for a in acts] if wrap else [acts]):
                sub = part[part["activation"].isin(group)]
                inits = self._present("init", sub)
                titles, shared = self._short_titles(inits, init_names)
                sub = sub.assign(panel=sub["init"].map(titles))
                order = [titles[i] for i in inits]
                pairs = [(a, i) for a in group for i in inits
                         if ((sub["activation"] == a) & (sub["init"] == i)).any()]
                sparse = not wrap and len(pairs) < len(group) * len(inits)  # deep_plain: 5 pairs of a 3 x 4 grid
                if sparse:  # a panel per pair present, titled by both, instead of a grid of mostly empty panels
                    label = {a: str(a).replace(" ", "\n") for a in group}  # "tanh transform=dks": a line each
                    sub = sub.assign(panel=sub["activation"].map(label) + "\n" + sub["panel"])
                    order = [f"{label[a]}\n{titles[i]}" for a, i in pairs]
                columns = len(order) if not (wrap or sparse) else min(4, len(order))
                width = min(2.4, WIDTH / columns)
                height = min(1.75, 0.9 * width) + (0.2 * max(o.count("\n") for o in order) if sparse else 0)
                g = sns.FacetGrid(sub, row=None if wrap or sparse else "activation",
                                  row_order=None if wrap or sparse else group, col="panel", col_order=order,
                                  col_wrap=4 if wrap or sparse else None, sharey=True if wrap or sparse else "row",
                                  height=height, aspect=width / height, margin_titles=not (wrap or sparse),
                                  despine=False)

                line = {"marker": "o", "linewidth": 1.0} if d <= 30 else {"marker": None, "linewidth": 2.4}

                def draw(data: pd.DataFrame, **_) -> None:
                    ax, init = plt.gca(), data["init"].iloc[0]
                    sns.lineplot(data, x="layer", y=measured, ax=ax, color=self.palette["init"][init], markersize=3.5,
                                 markeredgewidth=0, **line, **LOG_BAND)
                    pred = data.groupby("layer")[predicted].apply(lambda v: float(np.exp(np.log(v).mean())))
                    ax.plot(pred.index, pred.to_numpy(), zorder=5, path_effects=HALO, **PREDICTION)

                g.map_dataframe(draw)
                g.set_titles(template="{col_name}", row_template="{row_name}", col_template="{col_name}")
                g.set_axis_labels("layer", ylabel)
                for ax in g.axes.flat:
                    ax.set_yscale("log")
                    self._plain_log_ticks(ax.yaxis)
                    ax.xaxis.set_major_locator(integer_ticks(4))
                handles = [Line2D([], [], color="0.45", markersize=4, label="measured", **line),
                           Line2D([], [], label="mean-field prediction", path_effects=HALO, **PREDICTION)]
                g.figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2,
                                frameon=False)
                what = ", ".join(([*group] if wrap else []) + ([shared] if shared else []) + [f"depth {d}"])
                self._fit_panel_text(g)
                g.figure.suptitle(what, y=1.0, va="bottom")
                stem = f"{name}_depth{d}" + (f"_{group[0]}" if wrap else "")
                figures.append(self._save(g.figure, stem, f"{what}: {caption}", THEORY))
        return figures

    def length_vs_theory(self) -> list[Figure]:
        """Theory a: measured pre-activation length q^l = mean h^2 at init against the length map."""
        data = self._at_init("preact_sq", "q_pred", hidden_only=True)
        return self._measured_vs_predicted(
            data, "preact_sq", "q_pred", "mean $h^2$", "preact_sq_vs_theory",
            "measured pre-activation second moment per hidden layer at init (init colour; geometric mean "
            "and 95% band over seeds) and the mean-field length map q_pred (black dashes), log scale.")

    def delta_vs_theory(self) -> list[Figure]:
        """Theory b: measured backward signal rms dL/dh at init against the backward gains."""
        data = self._at_init("delta_rms", "delta_rms_pred", hidden_only=False)
        return self._measured_vs_predicted(
            data, "delta_rms", "delta_rms_pred", "rms dL/dh", "delta_rms_vs_theory",
            "measured RMS of dL/dh per layer at init (init colour) and the mean-field prediction (black "
            "dashes; anchored at the output layer, the last one), log scale.")

    def jacobian_spectra(self) -> list[Figure]:
        """Theory c: singular-value distribution of the hidden Jacobian dh^L/dh^1 at init."""
        if self.spectra is None:
            return []
        sv = self.spectra[(self.spectra["epoch"] == 0) & (self.spectra["kind"] == "hidden")]
        if sv.empty:
            return []
        sv = sv[sv.groupby("job")["sv"].transform("max") > 0]  # zero init: a zero Jacobian has no spectrum
        if sv.empty:
            raise NothingToDraw("every hidden Jacobian at init is 0 (zero init): no spectrum")
        self._check_pooling(sv, ["activation", "init", "depth"])
        depths = sorted(sv["depth"].unique())
        if len(depths) > 3:
            depths = [depths[0], depths[len(depths) // 2], depths[-1]]
        acts, inits = self._present("activation", sv), self._present("init", sv)
        labels, shared = self._short_titles(inits, self.runs.drop_duplicates("init").set_index("init")["init_name"])
        width = min(3.5, WIDTH / len(depths))
        height = min(1.8, 0.8 * width)
        fig, axes = plt.subplots(len(acts), len(depths), figsize=(width * len(depths), height * len(acts) + 0.7),
                                 sharey=True, squeeze=False, layout="constrained")
        for (i, act), (j, d) in ((a, b) for a in enumerate(acts) for b in enumerate(depths)):
            ax = axes[i, j]
            panel = sv[(sv["activation"] == act) & (sv["depth"] == d)]
            positive = panel.loc[panel["sv"] > 0, "sv"]
            if positive.empty:
                ax.set_visible(False)
                continue
            hi = positive.max() * 1.5
            lo = max(positive.quantile(0.01) / 1.5, hi * 1e-12)  # s below the axis pile up at its left edge
            below = []
            for init in inits:
                values = np.sort(panel.loc[panel["init"] == init, "sv"].to_numpy())
                if len(values) and lo <= values[-1]:
                    ax.step(np.clip(values, lo, None), np.arange(1, len(values) + 1) / len(values),
                            where="post", lw=1.3, label=labels[init], **self._line_kw(init))
                elif len(values) and values[-1] > 0:
                    below.append(labels[init])
            if below:  # a line along the left spine would not be seen
                ax.text(0.98, 0.04, f"every s < {lo:.0e}: " + ", ".join(below), transform=ax.transAxes,
                        ha="right", va="bottom", fontsize="x-small", color="0.3")
            ax.axvline(1.0, color="0.5", linestyle=":", lw=1)
            ax.set(xscale="log", xlim=(lo, hi), ylim=(0, 1.02), yticks=[0, 0.5, 1])
            self._plain_log_ticks(ax.xaxis)
            ax.set_title(f"{act}, depth {d}", fontsize="medium")
            ax.set_xlabel("singular value s" if i == len(acts) - 1 else "")
            ax.set_ylabel("fraction ≤ s" if j == 0 else "")
        handles = {}
        for ax in axes.flat:
            handles.update(zip(*reversed(ax.get_legend_handles_labels())))
        order = [labels[i] for i in inits if labels[i] in handles]
        fig.legend([handles[label] for label in order], order, title=shared or None, loc="outside lower center",
                   ncol=min(4, len(order)), frameon=False)
        return [self._save(fig, "jacobian_spectra", (
            "Singular values s of the hidden Jacobian dh^L/dh^1 at init, pooled over probe inputs and seeds: "
            "the fraction at most s (log s; dotted: s = 1, isometry), a line per init; values below a "
            "panel's axis count at its left edge, among them the numerically zero ones (s < s_max · n · eps of "
            "float32, recorded as 0: e.g. relu's dead units); zero inits are not drawn."), THEORY)]

    def jacobian_mean_sq(self) -> list[Figure]:
        """Theory c': the hidden Jacobian's mean squared singular value, measured vs predicted."""
        if self.jacobian is None or "mean_sq_sv_pred" not in self.jacobian:
            return []
        jac = self.jacobian[(self.jacobian["epoch"] == 0) & (self.jacobian["kind"] == "hidden")]
        if jac["mean_sq_sv_pred"].isna().all():
            return []
        jac = jac[(jac["mean_sq_sv"] > 0) & (jac["mean_sq_sv_pred"] > 0)]
        if jac.empty:
            raise NothingToDraw("every hidden Jacobian mean s² or its prediction at init is 0 (log axes)")
        self._check_pooling(jac, ["activation", "init", "depth"])
        jac = jac.assign(ratio=jac["mean_sq_sv"] / jac["mean_sq_sv_pred"])
        acts, inits = self._present("activation", jac), self._present("init", jac)
        labels, shared = self._short_titles(inits, self.runs.drop_duplicates("init").set_index("init")["init_name"])
        jac = jac.assign(init=jac["init"].map(labels))
        style = {"hue": "init", "hue_order": [labels[i] for i in inits],
                 "palette": {labels[i]: self.palette["init"][i] for i in inits},
                 **({"style": "activation", "style_order": acts} if len(acts) > 1 else {"marker": "o"})}
        fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 3.4), layout="constrained")
        sns.scatterplot(jac, x="mean_sq_sv_pred", y="mean_sq_sv", ax=left, s=36, legend=False, **style)
        ends = np.array([jac[["mean_sq_sv", "mean_sq_sv_pred"]].min().min(),
                         jac[["mean_sq_sv", "mean_sq_sv_pred"]].max().max()]) * np.array([0.5, 2])
        left.plot(ends, ends, color="0.5", linestyle=":", lw=1, zorder=0)
        left.set(xscale="log", yscale="log", xlim=ends, ylim=ends, xlabel="predicted mean $s^2$",
                 ylabel="measured mean $s^2$", title="hidden Jacobian at init")
        for axis in (left.xaxis, left.yaxis):
            self._plain_log_ticks(axis)
        left.tick_params(pad=5)
        sns.lineplot(jac, x="depth", y="ratio", ax=right, dashes=False, **style, **LOG_BAND,
                     **({"markers": True} if len(acts) > 1 else {}))
        depths = np.sort(jac["depth"].unique())
        if depths[-1] >= 8 * depths[0]:
            right.set_xscale("log")
        if len(depths) <= 8:
            right.set_xticks(depths, [f"{d:g}" for d in depths])
        right.xaxis.set_minor_locator(NullLocator())
        right.axhline(1.0, color="0.5", linestyle=":", lw=1)
        right.set(ylabel="measured / predicted", title="ratio vs depth")
        low, high = jac["ratio"].min(), jac["ratio"].max()
        if 0.5 < low and high < 2:  # within a factor 2: a linear axis reads better
            pad = 0.08 * (max(high, 1) - min(low, 1)) + 0.02
            right.set_ylim(min(low, 1) - pad, max(high, 1) + pad)
        else:
            right.set_yscale("log")
            self._plain_log_ticks(right.yaxis)
        handles, names = right.get_legend_handles_labels()
        right.get_legend().remove()
        if shared:  # seaborn's hue title "init" becomes the shared init name
            names = [shared if n == "init" else n for n in names]
        title = (shared or "init") if len(acts) == 1 else None  # with one activation, seaborn gives no header
        fig.legend(handles, names, title=title, loc="outside right center", frameon=False)
        return [self._save(fig, "jacobian_mean_sq_sv", (
            "Mean squared singular value of the hidden Jacobian at init: measured against the mean-field "
            "product of backward gains (left, dotted: equal) and their ratio vs depth (right, geometric "
            "mean over seeds); colour: init" + (", marker: activation." if len(acts) > 1 else ".")), THEORY)]

    # --- the phase diagram --------------------------------------------------------------------
    def phase_diagram(self) -> list[Figure]:
        """Theory d: accuracy over (sigma_w^2, depth) with the 6 xi_c trainability curve, for every
        activation, init and sigma_b^2 whose runs vary both sigma_w^2 and depth."""
        if "sigma_w2" not in self.runs:
            return []
        finite = np.isfinite(self.runs["sigma_w2"].astype(float)) & np.isfinite(self.runs["sigma_b2"].astype(float))
        runs = self.runs[finite]
        runs = runs.assign(sigma_w2=_rounded(runs["sigma_w2"], 9), sigma_b2=_rounded(runs["sigma_b2"], 12))
        scale = ("init.factor", "init.std", "init.gain")  # what sets sigma_w^2, the x axis
        # keys no figure shows are fixed per Plotter.all context; other init parameters (init.mode) split here
        others = [k for k in self.keys if k.startswith("init.") and k not in scale]
        figures = []
        for values, part in runs.groupby(["activation", "init_name", "sigma_b2", *others], sort=False, dropna=False):
            if part["sigma_w2"].nunique() > 1 and part["depth"].nunique() > 1:
                figures.append(self._phase_panel(part, dict(zip(others, values[3:]))))
        return figures

    @staticmethod
    def _edges(centres: np.ndarray, log: bool) -> np.ndarray:
        """Cell edges halfway between centres (geometrically on a log axis), the ends mirrored."""
        x = np.log(centres) if log else centres.astype(float)
        if len(x) == 1:
            x = np.array([x[0] - 0.5, x[0] + 0.5]) if not log else np.array([x[0] - 0.3, x[0] + 0.3])
            return np.exp(x) if log else x
        mid = (x[1:] + x[:-1]) / 2
        ends = (x[0] - mid[0], mid[-1] - x[-1])  # minus half the first and last gaps
        if log:  # an end cell at most a decade wide each way: sigma_w^2 up to 1e300 kept the axis within floats
            ends = (max(ends[0], -math.log(10)), max(ends[1], -math.log(10)))
        edges = np.concatenate([[x[0] + ends[0]], mid, [x[-1] - ends[1]]])
        return np.exp(edges) if log else edges

    @staticmethod
    def _activation_spec(part: pd.DataFrame) -> dict:
        row = part.iloc[0]
        params = {k.split(".", 1)[1]: row[k] for k in part.columns
                  if k.startswith("activation.") and k != "activation.name" and pd.notna(row[k])}
        return {"name": row["activation_name"], **params}

    def _phase_panel(self, part: pd.DataFrame, others: dict) -> Figure:
        self._check_pooling(part, ["activation", "init_name", "sigma_b2", "depth", "sigma_w2", *others])
        act, init, sigma_b2 = part["activation"].iloc[0], part["init_name"].iloc[0], part["sigma_b2"].iloc[0]
        cells = part.groupby(["depth", "sigma_w2"]).agg(
            train=("final_train_acc", "mean"), test=("final_test_acc", "mean"),
            diverged=("status", lambda s: (s == "diverged").any())).reset_index()
        sw2, depths = np.sort(cells["sigma_w2"].unique()), np.sort(cells["depth"].unique())
        log_x = sw2[0] > 0 and sw2[-1] / sw2[0] > 1e3  # over 1e-2..1e300 a linear axis squashed every cell at 0
        x_edges, y_edges = self._edges(sw2, log=log_x), self._edges(depths, log=True)
        grid = (np.geomspace(x_edges[0], x_edges[-1], 201) if log_x
                else np.linspace(max(x_edges[0], 1e-3), x_edges[-1], 201))  # sigma_w^2 > 0
        spec = self._activation_spec(part)
        try:
            xi_c = np.array([theory.depth_scales(spec, float(x), float(sigma_b2))[1] for x in grid])
            critical = theory.critical_sigma_w2(spec, float(sigma_b2))
        except Exception as err:  # noqa: BLE001 - an activation theory cannot handle: no curves
            log.warning("phase diagram of %s: no theory curves (%s)", act, err)
            xi_c, critical = np.full_like(grid, np.nan), np.nan
        fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.7), sharey=True, layout="constrained")
        numbers = len(sw2) * len(depths) <= 60  # numbers (and † marks) only where they fit
        for ax, metric in zip(axes, ("train", "test")):
            acc = cells.pivot(index="depth", columns="sigma_w2", values=metric).reindex(index=depths, columns=sw2)
            mesh = ax.pcolormesh(x_edges, y_edges, acc.to_numpy(), cmap="mako", vmin=0, vmax=1,
                                 edgecolors="white", linewidth=0.5)
            diverged = cells.pivot(index="depth", columns="sigma_w2", values="diverged").reindex_like(acc).eq(True)
            if numbers:
                for (i, d), (j, x) in ((a, b) for a in enumerate(depths) for b in enumerate(sw2)):
                    value, mark = acc.iat[i, j], "†" if diverged.iat[i, j] else ""
                    if pd.notna(value):
                        ax.text(x, d, f"{value:.2f}".lstrip("0") + mark, ha="center", va="center", fontsize=6.5,
                                color="white" if value < 0.6 else "black")
                    elif mark:  # every seed diverged: no accuracy, an empty cell but for its mark
                        ax.text(x, d, mark, ha="center", va="center", fontsize=8, color="0.15")
            else:  # no room for numbers: a cell where every seed diverged is marked, not left blank as unrun
                lost = diverged & acc.isna()
                rows, cols = np.nonzero(lost.to_numpy())
                ax.scatter(sw2[cols], depths[rows], marker="x", s=12, linewidths=0.9, color="0.15", zorder=3)
            finite = np.isfinite(xi_c)
            if finite.any():
                ax.plot(grid, np.where(finite, 6 * xi_c, np.nan), color="#e8512a", lw=2, label=r"$6\,\xi_c$")
                ax.plot(grid, np.where(finite, xi_c, np.nan), color="#e8512a", lw=1.3, linestyle=(0, (4, 2)),
                        label=r"$\xi_c$")
            if np.isfinite(critical) and x_edges[0] <= critical <= x_edges[-1]:
                ax.axvline(critical, color="#f5c242", lw=1.3, linestyle=":", label=r"critical $\sigma_w^2$")
            ax.set(yscale="log", xscale="log" if log_x else "linear", xlim=(x_edges[0], x_edges[-1]),
                   ylim=(y_edges[0], y_edges[-1]),
                   xlabel=r"$\sigma_w^2$", title=f"final {metric} accuracy")
            if log_x:
                self._plain_log_ticks(ax.xaxis)  # matplotlib's own log ticks over 300 decades reached inf
            ax.set_yticks(depths, [f"{d:g}" for d in depths])
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_minor_locator(NullLocator())
            ax.grid(False)
        axes[0].set_ylabel("depth")
        fig.colorbar(mesh, ax=axes, label="accuracy", shrink=0.85, pad=0.02)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), frameon=False)
        extra = "".join(f", {k}={shown(v)}" for k, v in others.items())
        budgets = sorted(part["epochs"].unique()) if "epochs" in part else []
        epochs = ", ".join(f"{e:g}" for e in budgets) + (" epoch" if budgets == [1] else " epochs") if budgets else ""
        dataset = f", {part['dataset'].iloc[0]}" if "dataset" in part and part["dataset"].nunique() == 1 else ""
        fig.suptitle(f"{act}, {init}, $\\sigma_b^2$={shown(sigma_b2)}{extra}{dataset}"
                     + (f", {epochs}" if epochs else ""))
        curves = ("; orange: 6ξ_c (solid, the trainable-depth rule of Schoenholz et al.) and ξ_c (dashed) from "
                  "mean-field theory; yellow dotted: the critical σ_w² (order left, chaos right)"
                  if finite.any() else "; ξ_c is infinite for every σ_w² here, so there is no trainability curve")
        if sigma_b2 == 0 and not finite.all():
            curves += ("; with σ_b² = 0, q* = 0 on the ordered side, where ξ_c is infinite (no curve) although "
                       "signals and gradients still shrink by χ₁ < 1 per layer: no curve there does not mean any "
                       "depth trains")
        name = (f"phase_diagram_{act}_{init}_sb2_{shown(sigma_b2)}"
                + "".join(f"_{shown(v)}" for v in others.values()))
        every_seed = cells["diverged"] & cells["train"].isna()
        marks = ("; †: diverged in at least one seed (alone in its cell: in every seed, so no accuracy)"
                 if numbers and cells["diverged"].any() else
                 "; x: every seed diverged (no accuracy)" if every_seed.any() else "")
        return self._save(fig, name, (
            f"{act}, {init}, σ_b²={shown(sigma_b2)}{extra}: final train (left; mean over the last epoch's steps) and "
            f"test (right) accuracy over σ_w² = fan_in·Var(W) and depth, mean over seeds{marks}{curves}."), THEORY)


def _rounded(values: pd.Series, decimals: int) -> pd.Series:
    """``values`` rounded to ``decimals`` (float noise: 2.0000000001 is 2) where that is exact in a
    float; pandas' round of 1e300 to 9 decimals overflowed to inf and the phase diagram was dropped."""
    values = values.astype(float)
    with np.errstate(over="ignore", invalid="ignore"):
        return values.where(values.abs() > 1e15, values.round(decimals))
