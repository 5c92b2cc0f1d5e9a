"""Jacobian singular values: the dynamical-isometry measurement (Saxe et al.; Pennington et al.).

Two Jacobians per probe input (``probe_count`` of them), both by ``torch.func.jacrev`` under ``vmap``:

- ``hidden``: d h^depth / d h^1, first to last hidden pre-activation (width x width, square), the
  product W^depth D^(depth-1) ... W^2 D^1 whose mean squared singular value mean-field theory
  predicts as the product of the layers' backward gains;
- ``input_output``: d logits / d x (classes x inputs), the whole network.

Singular values are taken in float64 and summarized per (epoch, kind) for jacobian.csv.
"""

from __future__ import annotations

import torch
from torch.func import jacrev, vmap

from initlab.models import MLP
from initlab.records import JACOBIAN_QUANTILES, JACOBIAN_SUMMARY_COLUMNS


def probe_count(width: int) -> int:
    """Probe inputs to use: 16 at width 128, fewer for wide nets (the cost grows as width^3)."""
    return max(1, min(32, 2048 // width))


def _hidden_tail(model: MLP):
    """h^1 -> h^depth through the remaining hidden layers (one sample, no batch dimension)."""

    def tail(h: torch.Tensor) -> torch.Tensor:
        for layer in model.hidden[1:]:
            h = layer(model.act(h))
        return h

    return tail


def _svdvals(jac: torch.Tensor) -> torch.Tensor:
    """Singular values per sample; NaN for a Jacobian with non-finite entries (overflowed
    weights or signals), where the SVD itself would raise."""
    jac = jac.detach().double()
    finite = torch.isfinite(jac).flatten(1).all(dim=1)
    sv = torch.linalg.svdvals(torch.where(finite[:, None, None], jac, torch.zeros_like(jac)))
    return torch.where(finite[:, None], sv, torch.full_like(sv, float("nan")))


def singular_values(model: MLP, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per kind, a (samples, k) float64 tensor of each input's Jacobian singular values.

    A sample whose Jacobian is not finite gets NaN singular values rather than an error.
    """
    model.eval()
    with torch.enable_grad():
        io = vmap(jacrev(lambda v: model(v.unsqueeze(0)).squeeze(0)))(x)
        spectra = {"input_output": io}
        if len(model.hidden) >= 2:
            spectra["hidden"] = vmap(jacrev(_hidden_tail(model)))(model.hidden[0](x).detach())
    return {kind: _svdvals(jac) for kind, jac in spectra.items()}


def summarize(sv: torch.Tensor) -> dict[str, float]:
    """Pooled statistics of all singular values s (and of s^2) over the probe inputs."""
    flat = sv.flatten()
    sq = flat.pow(2)
    quantiles = torch.quantile(flat, torch.tensor(JACOBIAN_QUANTILES, dtype=flat.dtype, device=flat.device))
    stats = [sq.mean(), sq.var(correction=0), flat.min(), flat.max(), flat.std(correction=0), *quantiles]
    return dict(zip(JACOBIAN_SUMMARY_COLUMNS, [sv.shape[0], sv.shape[1], *(float(v) for v in stats)]))
