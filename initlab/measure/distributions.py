"""Distributions of weights and signals per site on the probe batch: quantiles and histograms.

For every site (forward order, as in layers.csv) the quantiles of its weight, its
pre-activations and its post-activations, and a fixed-bin histogram of its post-activations;
then the quantiles of each weight no site names (rows of kind ``weight``). Tensors with
positions pool every entry. Only finite entries count; a tensor with none gives empty values.

Quantiles interpolate linearly between order statistics (numpy.quantile's default method), from
a full sort on the device: no subsampling, and no element limit (torch.quantile refuses inputs
above 2**24 entries in the torch versions that have that limit). The histogram has ``BINS`` equal bins over [``HIST_LO``, ``HIST_HI``];
entries outside are counted in the end bins; values are fractions of the finite entries. Every
number is computed on the device and copied to the host once.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from initlab.measure.normalization import probe_mode
from initlab.measure.probes import LAYER_KINDS, content_rows, unmeasured_weights, weight_row
from initlab.models.sites import probing

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
QUANTILE_STATS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
BINS, HIST_LO, HIST_HI = 40, -4.0, 4.0
TENSORS = ("weight", "preact", "act")


def finite_quantiles(t: torch.Tensor, qs: tuple[float, ...] = QUANTILES) -> torch.Tensor:
    """(len(qs),) float64: the quantiles of the finite entries of ``t`` (any shape), NaN if none.

    Linear interpolation at position q (n - 1) of the sorted finite values, as numpy.quantile.
    """
    v = t.detach().double().flatten()
    finite = torch.isfinite(v)
    v = torch.where(finite, v, torch.full_like(v, float("inf"))).sort().values  # non-finite last
    n = finite.sum()
    pos = torch.tensor(qs, dtype=torch.float64, device=v.device) * (n - 1).clamp(min=0)
    lo = pos.floor().long().clamp(max=max(len(v) - 1, 0))
    hi = pos.ceil().long().clamp(max=max(len(v) - 1, 0))
    if len(v) == 0:
        return torch.full((len(qs),), float("nan"), dtype=torch.float64, device=v.device)
    a, b = v[lo], v[hi]
    out = a + (b - a) * (pos - lo)
    out = torch.where(lo == hi, a, out)  # no inf - inf when both ends are the same entry
    return torch.where(n > 0, out, torch.full_like(out, float("nan")))


def finite_histogram(t: torch.Tensor, bins: int = BINS, lo: float = HIST_LO, hi: float = HIST_HI) -> torch.Tensor:
    """(bins,) float64: fractions of the finite entries of ``t`` in equal bins over [lo, hi],
    entries beyond either end counted in the end bin (NaN everywhere if none is finite)."""
    v = t.detach().double().flatten()
    finite = torch.isfinite(v)
    index = ((v.clamp(lo, hi) - lo) * (bins / (hi - lo))).floor().clamp(0, bins - 1)
    index = torch.where(finite, index, torch.zeros_like(index)).long()
    counts = torch.zeros(bins, dtype=torch.float64, device=v.device).scatter_add_(0, index, finite.double())
    return counts / finite.sum()


def distribution_rows(model: nn.Module, x: torch.Tensor, epoch: int) -> list[dict]:
    """distributions.csv rows (without ``attempt``) of ``model`` on the probe inputs ``x``.

    Columns: epoch, site, kind, index, layer (as layers.csv), tensor (weight | preact | act),
    stat (q01 ... q99, or hist with bin_lo/bin_hi), value (None where no entry is finite).
    """
    params = dict(model.named_parameters())
    with torch.no_grad(), probe_mode(model), probing(model, shifts=False) as probe:
        model(x)
    taps = list(probe.taps.values())
    content = content_rows(model, x)  # a padded sequence's padding positions are not data
    meta, blocks = [], []  # meta: (site, kind, index, layer, tensor, is_hist) per block
    layer = 0
    for i, tap in enumerate(taps):
        layer += tap.kind in LAYER_KINDS
        where = (tap.site, tap.kind, i, layer if tap.kind in LAYER_KINDS else None)
        if tap.weight is not None:
            meta.append((*where, "weight", False))
            blocks.append(finite_quantiles(params[tap.weight]))
        for name, t in (("preact", tap.pre), ("act", tap.post)):
            meta.append((*where, name, False))
            blocks.append(finite_quantiles(content(t)))
        meta.append((*where, "act", True))
        blocks.append(finite_histogram(content(tap.post)))
    named = {t.weight for t in taps if t.weight is not None}
    for j, w in enumerate(unmeasured_weights(model, named)):
        meta.append((weight_row(w), "weight", len(taps) + j, None, "weight", False))
        blocks.append(finite_quantiles(params[w]))
    values = torch.cat(blocks).tolist() if blocks else []  # the one host copy
    edges = [round(HIST_LO + b * (HIST_HI - HIST_LO) / BINS, 12) for b in range(BINS + 1)]  # -2.6, not -2.5999...
    rows, k = [], 0
    for site, kind, index, lay, tensor, is_hist in meta:
        stats = [("hist", edges[b], edges[b + 1]) for b in range(BINS)] if is_hist else \
            [(s, None, None) for s in QUANTILE_STATS]
        for stat, bin_lo, bin_hi in stats:
            rows.append({"epoch": epoch, "site": site, "kind": kind, "index": index, "layer": lay,
                         "tensor": tensor, "stat": stat, "bin_lo": bin_lo, "bin_hi": bin_hi,
                         "value": _finite_or_none(values[k])})
            k += 1
    return rows


def _finite_or_none(v: float) -> Optional[float]:
    return v if v == v else None
