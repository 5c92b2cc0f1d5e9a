"""Per-site statistics on the fixed probe batch: one forward and one backward, no update.

The forward runs inside ``probing`` (initlab.models.sites), so every site hands back its
pre-activation h, its output and a zero shift; ``torch.autograd.grad`` of the training loss
with respect to the weights, their biases and the shifts gives weight gradients and
delta = dL/dh without touching the parameters' ``.grad``. All statistics are stacked on the
device and copied to the host once.

Rows: one per site in forward order, then one of kind ``weight`` per weight matrix or kernel
that no site names (``unmeasured_weights``). Tensors with positions pool over them: (N, C, H, W)
feature maps and (N, T, D) sequences count every entry (a padded sequence's padding positions
excepted, ``content_rows``); ``frac_dead`` counts
channels (maps) or features (sequences, vectors) zero on every probe entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from initlab.choices import ACTIVATIONS
from initlab.losses import loss_fn
from initlab.measure.normalization import probe_mode
from initlab.models.sites import ActivationSite, probing, sites
from initlab.records import PROBE_COLUMNS

LAYER_KINDS = ("hidden", "output")  # the sites numbered in layers.csv's ``layer`` column
WEIGHT_COLUMNS = ("weight_norm", "grad_norm", "bias_grad_norm")
_COL = {c: i for i, c in enumerate(PROBE_COLUMNS)}


@dataclass(frozen=True)
class Row:
    """Where a row of statistics was taken: ``site`` (dotted module name; for a weight row the
    module owning the weight), ``kind`` (a site kind or ``weight``), ``index`` (0-based, sites in
    forward order then weight rows), ``layer`` (1-based among hidden/output sites, else None) and
    ``weight`` (dotted parameter name, or None)."""

    site: str
    kind: str
    index: int
    layer: Optional[int]
    weight: Optional[str]


@dataclass
class ProbeStatistics:
    """``values``: (rows, len(PROBE_COLUMNS)) float64 CPU tensor, NaN where ``present`` is False
    (a column that does not apply to the row, e.g. weight columns of a site with no weight)."""

    rows: list[Row]
    values: torch.Tensor
    present: torch.Tensor

    @property
    def weights(self) -> list[str]:
        """Parameter names of the rows that have a weight, in row order (grad_norm_train's order)."""
        return [r.weight for r in self.rows if r.weight is not None]


def channel_dim(t: torch.Tensor) -> int:
    """The feature axis of a site tensor: 1 for vectors (N, F) and maps (N, C, H, W), -1 for
    sequences (N, T, D) (batch first, as every model here runs them)."""
    return -1 if t.dim() == 3 else 1


def unmeasured_weights(model: nn.Module, named: set[str]) -> list[str]:
    """Weight matrices and kernels no site names, in module order: every parameter of two or more
    dimensions whose name ends in ``weight`` (Linear, Conv and Embedding weights, and
    MultiheadAttention's stacked q/k/v ``in_proj_weight``, which no Linear holds); a norm's
    per-feature scale is a vector and stays out."""
    found = []
    for name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{name}.{p_name}" if name else p_name
            if p_name.endswith("weight") and p.dim() >= 2 and full not in named:
                found.append(full)
    return found


def weight_row(weight: str) -> str:
    """layers.csv's ``site`` of a weight no site names: its module (``encoder.layers.0.linear2``),
    or for a parameter named otherwise its name without the suffix
    (``encoder.layers.0.self_attn.in_proj``)."""
    return weight.removesuffix(".weight").removesuffix("_weight")


def measured_weights(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Parameter names of the weights ``probe_statistics`` gives rows (``ProbeStatistics.weights``,
    same order), found by a no-grad forward of one sample of ``x``."""
    model.eval()
    with torch.no_grad(), probing(model, shifts=False) as probe:
        model(x[:1])
    named = [t.weight for t in probe.taps.values() if t.weight is not None]
    return named + unmeasured_weights(model, set(named))


def content_rows(model: nn.Module, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A tensor a site saw on the probe inputs ``x``, without the padding positions: a model with a
    ``content(x)`` mask (initlab.models.transformer) keeps only the (N, T) positions that hold
    tokens of its (N, T, D) tensors, (M, D); every other tensor passes unchanged. Padding is not
    data: with it masked out of attention and pooling its delta is exactly 0, and counting it
    would scale delta_rms by the share of padding in the probe batch."""
    keep = model.content(x) if callable(getattr(model, "content", None)) else None
    if keep is None:
        return lambda t: t
    return lambda t: t[keep] if t.dim() == 3 and t.shape[:2] == keep.shape else t


def _share(count: torch.Tensor, total: int) -> torch.Tensor:
    """count / total as a float64 scalar: the mean of a 0/1 mask, bit for bit (the count is exact),
    without building and averaging a float64 copy of the mask."""
    return count.double() / total


def _frac_zero(a: torch.Tensor) -> torch.Tensor:
    return _share(a.numel() - torch.count_nonzero(a), a.numel())  # NaN is not zero


def _dead(a: torch.Tensor) -> torch.Tensor:
    ch = channel_dim(a) % a.dim()
    peak = a.abs().amax(dim=[i for i in range(a.dim()) if i != ch])  # per channel; NaN stays NaN: not dead
    return _share(torch.count_nonzero(peak == 0), peak.numel())


def probe_statistics(model: nn.Module, activation: str, x: torch.Tensor, y: torch.Tensor,
                     loss: str = "cross_entropy") -> ProbeStatistics:
    """Statistics of every site and unmeasured weight of ``model`` on the probe batch (x, y).

    Means and standard deviations pool over probe samples, units and positions (population
    std); gradients are those of the training loss (``loss``, initlab.losses) over the probe batch. ``frac_zero``
    counts zero entries, ``frac_dead`` channels/features zero on every probe entry, and
    ``frac_saturated`` entries in the flat part of ``activation`` (the choice's ``saturated`` rule,
    initlab.choices; 0 for activations without one); ``frac_dead`` and ``frac_saturated`` are 0 at the
    output site (``frac_zero`` is counted there too), and
    ``frac_saturated`` is 0 at sites that apply no activation.
    Non-finite weights or signals give non-finite statistics, never an error.
    """
    params = dict(model.named_parameters())
    with torch.enable_grad(), probe_mode(model), probing(model) as probe:
        logits = model(x)
        value = loss_fn(loss, logits, y)
    taps = list(probe.taps.values())
    content = content_rows(model, x)
    named = {t.weight for t in taps if t.weight is not None}
    extra = unmeasured_weights(model, named)
    weights = [t.weight for t in taps if t.weight is not None] + extra
    biases = [params.get(w[: -len("weight")] + "bias") for w in weights]
    wanted = [params[w] for w in weights] + [b for b in biases if b is not None] + [t.shift for t in taps]
    grads = list(torch.autograd.grad(value, wanted, allow_unused=True))
    w_grads = dict(zip(weights, grads[:len(weights)]))
    grads = grads[len(weights):]
    b_grads = {}
    for w, b in zip(weights, biases):
        if b is not None:
            b_grads[w] = grads.pop(0)
    deltas = grads
    activations = {name for name, m in sites(model).items() if isinstance(m, ActivationSite)}
    saturated = ACTIVATIONS[activation].saturated
    # a kernel-shaped phi_hat = b (phi(.) + o) saturates where phi does: the rule reads phi's output
    unshaped = {name: m.activation.unshaped for name, m in sites(model).items()
                if hasattr(getattr(m, "activation", None), "unshaped")}

    rows, stacked, present = [], [], []
    nan = torch.full((), math.nan, dtype=torch.float64, device=x.device)
    zero = torch.zeros((), dtype=torch.float64, device=x.device)
    layer = 0

    def norm(t: Optional[torch.Tensor]) -> torch.Tensor:  # no gradient: the loss does not use it
        return zero if t is None else torch.linalg.vector_norm(t.double())

    with torch.no_grad():
        for i, (tap, d) in enumerate(zip(taps, deltas)):
            is_output = tap.kind == "output"
            if tap.kind in LAYER_KINDS:
                layer += 1
            rows.append(Row(tap.site, tap.kind, i, layer if tap.kind in LAYER_KINDS else None, tap.weight))
            # float64 reductions: in float32, squares of values below ~1e-19 (vanishing signals in
            # deep nets, the regime under study) underflow and norms and rms values read exactly 0
            h = content(tap.pre).double()
            a = h if tap.post is tap.pre else content(tap.post).double()  # a plain site hands over h twice
            d = zero if d is None else content(d).double()
            has_w = tap.weight is not None
            stacked.append(torch.stack([
                h.mean(), h.std(correction=0), h.pow(2).mean(),
                a.mean(), a.std(correction=0),
                _frac_zero(a),
                zero if is_output else _dead(a),
                _share(torch.count_nonzero(saturated(unshaped[tap.site](a) if tap.site in unshaped else a)), a.numel())
                if saturated and tap.site in activations and not is_output
                else zero,
                norm(params[tap.weight]) if has_w else nan,
                norm(w_grads[tap.weight]) if has_w else nan,
                norm(b_grads.get(tap.weight)) if has_w else nan,
                d.pow(2).mean().sqrt(),
            ]))
            present.append([True] * 8 + [has_w, has_w, has_w and tap.weight in b_grads, True])
        for j, w in enumerate(extra):
            rows.append(Row(weight_row(w), "weight", len(taps) + j, None, w))
            values = torch.full((len(PROBE_COLUMNS),), math.nan, dtype=torch.float64, device=x.device)
            values[_COL["weight_norm"]] = norm(params[w])
            values[_COL["grad_norm"]] = norm(w_grads[w])
            values[_COL["bias_grad_norm"]] = norm(b_grads.get(w))
            stacked.append(values)
            mask = [c in WEIGHT_COLUMNS for c in PROBE_COLUMNS]
            mask[_COL["bias_grad_norm"]] = w in b_grads
            present.append(mask)
    values = torch.stack(stacked).cpu()
    return ProbeStatistics(rows, values, torch.tensor(present, dtype=torch.bool))
