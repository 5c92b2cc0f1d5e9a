"""How weight, pre-activation and post-activation distributions evolve through training
(distributions.csv): the quantile fan per site over epochs, and the histogram-over-time image
(fastai's "colorful dimension": epoch across, histogram bin up, colour the log fraction of entries).

One run per configuration is drawn (its lowest seed: quantiles of different seeds do not average
into a quantile), at the detail depths. With many sites a readable subset is drawn: the first,
middle and last hidden sites, named in the caption.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.patches import Patch

from initlab.analysis.figures.base import WIDTH, Figure, integer_ticks

QUANTILE_STATS = ("q01", "q05", "q25", "q50", "q75", "q95", "q99")
BANDS = (("q01", "q99", "1-99%", 0.18), ("q05", "q95", "5-95%", 0.3), ("q25", "q75", "25-75%", 0.5))  # lo, hi, label, alpha
TENSORS = ("weight", "preact", "act")
TENSOR_LABELS = {"weight": "weight", "preact": "pre-activation h", "act": "post-activation phi(h)"}
MAX_SITES = 3


def readable_sites(frame: pd.DataFrame) -> tuple[list[str], int]:
    """The sites to draw for one run's distributions and how many hidden sites it has.

    ``frame``: distributions.csv rows (site, kind, index). All hidden sites when there are at most
    MAX_SITES, else the first, middle and last in forward order; a model without hidden sites
    gets its first sites. Returns (site names in forward order, number of hidden sites).
    """
    order = frame.drop_duplicates("site").sort_values("index")
    hidden = order[order["kind"] == "hidden"]["site"].tolist()
    pool = hidden or order["site"].tolist()
    if len(pool) <= MAX_SITES:
        return pool, len(hidden)
    return [pool[0], pool[len(pool) // 2], pool[-1]], len(hidden)


def epoch_edges(epochs: np.ndarray) -> np.ndarray:
    """Cell edges around the recorded epochs (sorted, possibly every k-th): halfway between neighbours."""
    epochs = np.asarray(epochs, dtype=float)
    if len(epochs) == 1:
        return np.array([epochs[0] - 0.5, epochs[0] + 0.5])
    mid = (epochs[1:] + epochs[:-1]) / 2
    return np.concatenate([[epochs[0] - (mid[0] - epochs[0])], mid, [epochs[-1] + (epochs[-1] - mid[-1])]])


def histogram_image(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One site's post-activation histograms as an image: (fractions (n_bins, n_epochs), epochs, bin edges).

    ``frame``: the site's ``hist`` rows of distributions.csv (epoch, bin_lo, bin_hi, value).
    A bin missing at an epoch counts 0.
    """
    table = frame.pivot_table(index="bin_lo", columns="epoch", values="value", aggfunc="first").sort_index()
    highs = frame.drop_duplicates("bin_lo").set_index("bin_lo")["bin_hi"].reindex(table.index)
    edges = np.append(table.index.to_numpy(float), float(highs.iloc[-1]))
    return table.fillna(0.0).to_numpy(float), table.columns.to_numpy(), edges


class DistributionFigures:
    def _distribution_runs(self) -> list[tuple[pd.Series, pd.DataFrame]]:
        """(run, its distributions.csv rows) for the lowest seed of each configuration at the detail depths."""
        if self.distributions is None:
            return []
        dist = self.distributions[self.distributions["depth"].isin(self.detail)]
        runs = self.runs[self.runs["job"].isin(set(dist["job"]))]
        others = [k for k in self.keys if k != "seed" and k in runs]
        runs = runs.sort_values("seed", kind="stable").drop_duplicates([c for c in ("activation", "init", "depth", *others)
                                                         if c in runs]).sort_index()
        return [(run, dist[dist["job"] == run["job"]]) for _, run in runs.iterrows()]

    @staticmethod
    def _run_name(run: pd.Series) -> str:
        return f"{run['activation']}_{run['init']}_depth{run['depth']}"

    def _sites_text(self, sites: list[str], n_hidden: int) -> str:
        if n_hidden > len(sites):
            return f"the first, middle and last of {n_hidden} hidden sites ({', '.join(sites)})"
        return f"sites {', '.join(sites)}"

    def distribution_fans(self) -> list[Figure]:
        """The quantile fan per site over epochs: median line, 25-75, 5-95 and 1-99 % bands of the
        weight, pre-activations and post-activations on the probe batch (distributions.csv), a row
        per tensor and a column per site, one figure per configuration. Nothing when no job recorded them."""
        figures = []
        for run, dist in self._distribution_runs():
            q = dist[dist["stat"].isin(QUANTILE_STATS)]
            sites, n_hidden = readable_sites(dist)
            tensors = [t for t in TENSORS if t in set(q["tensor"])]
            fig, axes = plt.subplots(len(tensors), len(sites), squeeze=False, sharex=True,
                                     figsize=(min(WIDTH, 2.4 * len(sites)), 1.8 * len(tensors)))
            color = self.palette["init"].get(run["init"], "C0")
            for (r, tensor), (c, site) in ((a, b) for a in enumerate(tensors) for b in enumerate(sites)):
                ax = axes[r, c]
                wide = (q[(q["site"] == site) & (q["tensor"] == tensor)]
                        .pivot_table(index="epoch", columns="stat", values="value", aggfunc="first"))
                if wide.empty:
                    ax.text(0.5, 0.5, f"no {tensor}", transform=ax.transAxes, ha="center", va="center")
                    ax.set_yticks([])
                else:
                    for lo, hi, label, alpha in BANDS:
                        ax.fill_between(wide.index, wide[lo], wide[hi], color=color, alpha=alpha, lw=0, label=label)
                    ax.plot(wide.index, wide["q50"], color="black", lw=1.2, label="median")
                if r == 0:
                    ax.set_title(site, fontsize=10)
                if c == 0:
                    ax.set_ylabel(TENSOR_LABELS[tensor], fontsize=9)
                ax.xaxis.set_major_locator(integer_ticks())
            for ax in axes[-1]:
                ax.set_xlabel("epoch")
            handles = [Patch(color=color, alpha=a, label=label) for _, _, label, a in BANDS]
            handles.append(plt.Line2D([], [], color="black", label="median"))
            fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, frameon=False)
            fig.suptitle(f"{run['activation']}, {run['init']}, depth {run['depth']}", y=1.0)
            fig.tight_layout()
            figures.append(self._save(fig, f"distribution_fan_{self._run_name(run)}", (
                f"{run['activation']}, {run['init']}, depth {run['depth']} (seed {run['seed']}): quantiles of each "
                f"tensor on the probe batch per epoch (epoch 0 = at init): median (line) and the 25-75, 5-95 and "
                f"1-99 % bands; {self._sites_text(sites, n_hidden)}."), "Distributions over training"))
        return figures

    def distribution_images(self) -> list[Figure]:
        """The histogram-over-time image per site: x = epoch, y = post-activation bin, colour = the
        fraction of probe entries in the bin on a log scale (empty bins drawn at the floor colour);
        one figure per configuration, a panel per site. Nothing when no job recorded distributions."""
        figures = []
        for run, dist in self._distribution_runs():
            hist = dist[dist["stat"] == "hist"]
            if hist.empty:
                continue
            sites, n_hidden = readable_sites(dist)
            images = {s: histogram_image(hist[hist["site"] == s]) for s in sites if (hist["site"] == s).any()}
            positive = np.concatenate([img[img > 0] for img, _, _ in images.values()])
            norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
            cmap = plt.get_cmap("viridis").with_extremes(bad=plt.get_cmap("viridis")(0.0))
            fig, axes = plt.subplots(1, len(images), squeeze=False, sharey=True,
                                     figsize=(min(WIDTH, 2.4 * len(images) + 0.8), 2.4))
            for ax, (site, (img, epochs, edges)) in zip(axes[0], images.items()):
                mesh = ax.pcolormesh(epoch_edges(epochs), edges, np.ma.masked_less_equal(img, 0), cmap=cmap,
                                     norm=norm, shading="flat")
                ax.set_title(site, fontsize=10)
                ax.grid(False)
                ax.set_xlabel("epoch")
                ax.set_xticks(epochs[::-(-len(epochs) // 5)])  # recorded epochs only, at most 5 labels
            axes[0, 0].set_ylabel("post-activation phi(h)")
            fig.colorbar(mesh, ax=axes[0].tolist(), label="fraction of entries", fraction=0.05, pad=0.02)
            fig.suptitle(f"{run['activation']}, {run['init']}, depth {run['depth']}", y=1.08)
            figures.append(self._save(fig, f"distribution_hist_{self._run_name(run)}", (
                f"{run['activation']}, {run['init']}, depth {run['depth']} (seed {run['seed']}): histogram of the "
                f"post-activations on the probe batch per epoch (epoch 0 = at init), values outside the bins counted "
                f"in the end bins; colour = fraction of entries per bin, log scale (empty bins at the darkest); "
                f"{self._sites_text(sites, n_hidden)}."), "Distributions over training"))
        return figures
