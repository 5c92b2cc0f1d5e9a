"""Jacobian singular values: the dynamical-isometry measurement (Saxe et al.; Pennington et al.).

Per probe input (``probe_count`` of them), by ``torch.func.jacrev`` under ``vmap``:

- ``input_output``: d logits / d x (classes x input entries, the input flattened), any model
  whose inputs are floats; token-id inputs have no such Jacobian and are skipped;
- ``hidden``: d h^depth / d h^1, first to last hidden pre-activation (width x width), the
  product W^depth D^(depth-1) ... W^2 D^1 whose mean squared singular value mean-field theory
  predicts as the product of the layers' backward gains; plain MLPs (no normalization) only.

Singular values are taken in float64, those below the Jacobian's resolution set to 0, and
summarized per (epoch, kind) for jacobian.csv.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import nn
from torch.func import jacrev, vmap

from initlab.measure.normalization import frozen_batch_statistics
from initlab.models import MLP
from initlab.records import JACOBIAN_QUANTILES, JACOBIAN_SUMMARY_COLUMNS

log = logging.getLogger(__name__)


def probe_count(width: Optional[int]) -> int:
    """Probe inputs to use: 16 at width 128, fewer for wide nets (the cost grows as width^3);
    16 for models without one width."""
    return 16 if width is None else max(1, min(32, 2048 // width))


def has_hidden_jacobian(model: nn.Module) -> bool:
    """Whether the h^1 -> h^depth Jacobian is defined: a plain MLP (no norm), depth >= 2."""
    return isinstance(model, MLP) and model.norms is None and len(model.hidden) >= 2


def _hidden_tail(model: MLP):
    """h^1 -> h^depth through the remaining hidden layers (one sample, no batch dimension)."""

    def tail(h: torch.Tensor) -> torch.Tensor:
        for layer, act in zip(model.hidden[1:], model.acts):
            h = layer(act(h))
        return h

    return tail


def _svdvals(jac: torch.Tensor) -> torch.Tensor:
    """(samples, k) float64 singular values of a (samples, m, n) Jacobian; NaN rows for a Jacobian
    with non-finite entries (overflowed weights or signals), where the SVD itself would raise.

    Values below the resolution of the dtype the Jacobian was computed in,
    s < s_max · max(m, n) · eps (NumPy's ``matrix_rank`` tolerance), are numerically zero and
    set to exactly 0: a deep relu net's Jacobian is exactly rank-deficient (its dead units), and
    a float32 computation reports those directions as noise from 1e-80 to 1e-7 · s_max.
    """
    eps = torch.finfo(jac.dtype).eps
    jac = jac.detach().double()
    finite = torch.isfinite(jac).flatten(1).all(dim=1)
    sv = torch.linalg.svdvals(torch.where(finite[:, None, None], jac, torch.zeros_like(jac)))
    floor = sv.amax(dim=1, keepdim=True) * max(jac.shape[1:]) * eps
    sv = torch.where(sv < floor, torch.zeros_like(sv), sv)
    return torch.where(finite[:, None], sv, torch.full_like(sv, float("nan")))


def _input_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(samples, classes, input entries): d logits / d x per sample."""
    def logits(v: torch.Tensor) -> torch.Tensor:
        return model(v.unsqueeze(0)).squeeze(0)

    try:
        jac = vmap(jacrev(logits))(x)
    except RuntimeError as err:  # an op without a batching rule: one sample at a time
        log.debug("vmap of the input-output Jacobian failed (%s): per-sample jacrev", err)
        jac = torch.stack([jacrev(logits)(v) for v in x])
    return jac.flatten(2)


def singular_values(model: nn.Module, x: torch.Tensor, x_batch: Optional[torch.Tensor] = None
                    ) -> dict[str, torch.Tensor]:
    """Per kind, a (samples, k) float64 tensor of each input's Jacobian singular values (0 below
    the Jacobian's resolution, see ``_svdvals``); no kind for token-id inputs (logged). A non-finite Jacobian gives
    NaN singular values. In eval mode, BatchNorm normalizing with the statistics of ``x_batch`` (the
    probe batch; default ``x``) held fixed (initlab.measure.normalization)."""
    spectra = {}
    with torch.enable_grad(), frozen_batch_statistics(model, x if x_batch is None else x_batch):
        if x.is_floating_point():
            spectra["input_output"] = _input_output(model, x)
        else:
            log.info("no input-output Jacobian: the inputs are token ids (%s), not floats", x.dtype)
        if has_hidden_jacobian(model):
            spectra["hidden"] = vmap(jacrev(_hidden_tail(model)))(model.hidden[0](model.network_input(x)).detach())
    return {kind: _svdvals(jac) for kind, jac in spectra.items()}


def summarize(sv: torch.Tensor) -> dict[str, float]:
    """Pooled statistics of all singular values s (and of s^2) over the probe inputs."""
    flat = sv.flatten()
    sq = flat.pow(2)
    quantiles = torch.quantile(flat, torch.tensor(JACOBIAN_QUANTILES, dtype=flat.dtype, device=flat.device))
    stats = [sq.mean(), sq.var(correction=0), flat.min(), flat.max(), flat.std(correction=0), *quantiles]
    return dict(zip(JACOBIAN_SUMMARY_COLUMNS, [sv.shape[0], sv.shape[1], *(float(v) for v in stats)]))
