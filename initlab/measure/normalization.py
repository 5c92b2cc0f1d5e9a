"""BatchNorm's batch statistics. In the probe passes a BatchNorm normalizes by the probe batch's own
statistics, as a training step normalizes, not by the running statistics that eval mode uses. At
init those are mean 0 and variance 1, so in eval mode every BatchNorm passed its input through
unchanged and a BatchNorm net's records at epoch 0 were those of the same net without it (resmlp,
he_normal, depth 50, width 64, on blobs: act_std 1.3e4 at its 24th block, about 3 with the batch's
statistics). Evaluation (epochs.csv) stays in eval mode: the model the job saves gives its rows.
And a batch of one sample cannot be normalized where a BatchNorm sees one value per channel per
sample (``check_batches``)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from initlab.config import ConfigError

BATCH_NORMS = nn.modules.batchnorm._BatchNorm  # BatchNorm1d/2d/3d, torchvision's included


def _modes(model: nn.Module) -> dict[nn.Module, bool]:
    return {m: m.training for m in model.modules()}


def _restore(modes: dict[nn.Module, bool]) -> None:
    for module, training in modes.items():
        module.training = training


@contextmanager
def probe_mode(model: nn.Module) -> Iterator[None]:
    """Inside the block ``model`` is in eval mode (dropout off) except its BatchNorm layers, which
    normalize each forward pass by that batch's mean and (biased) variance, as in training, and
    neither read nor update their running statistics; gradients flow through the batch statistics
    as in a training step (Ioffe & Szegedy 2015, sec. 3). Every module's mode is restored after."""
    modes = _modes(model)
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS)]
    tracked = {m: m.track_running_stats for m in norms}
    model.eval()
    for m in norms:
        m.train()
        m.track_running_stats = False  # torch then passes no running buffers: nothing is updated
    try:
        yield
    finally:
        for m, value in tracked.items():
            m.track_running_stats = value
        _restore(modes)


@contextmanager
def frozen_batch_statistics(model: nn.Module, x: torch.Tensor) -> Iterator[None]:
    """``probe_mode``'s normalization with the statistics of ``x`` held fixed, for per-example
    passes (a Jacobian of one input at a time, where a batch of one has no variance): one no-grad
    forward of ``x`` in probe mode records each BatchNorm's input mean and biased variance per
    channel (dim 1 of its (N, C, ...) input), which become its running statistics in eval mode, so
    each layer is the affine map that normalized ``x``. Buffers and modes are restored after."""
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS) and m.running_mean is not None]
    if not norms:
        yield
        return
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(module: nn.Module, inputs: tuple) -> None:
        h = inputs[0].detach()
        dims = [d for d in range(h.dim()) if d != 1]
        seen[module] = (h.mean(dim=dims), h.var(dim=dims, correction=0))

    handles = [m.register_forward_pre_hook(record) for m in norms]
    try:
        with torch.no_grad(), probe_mode(model):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    saved = {m: (m.running_mean.clone(), m.running_var.clone()) for m in norms}
    modes = _modes(model)
    try:
        with torch.no_grad():
            for m, (mean, var) in seen.items():
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
        model.eval()
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var) in saved.items():
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
        _restore(modes)


def one_value_per_channel(model: nn.Module, example: torch.Tensor) -> bool:
    """Whether some BatchNorm of ``model`` sees a single value per channel for one sample (a
    BatchNorm1d on (N, C) features, a BatchNorm2d on 1 x 1 maps), found by an eval-mode forward of
    ``example`` (one sample, (1, ...)): training mode cannot normalize a batch of one there."""
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS)]
    if not norms:
        return False
    single = []

    def record(module: nn.Module, inputs: tuple) -> None:
        single.append(inputs[0].numel() == module.num_features * len(inputs[0]))

    handles = [m.register_forward_pre_hook(record) for m in norms]
    modes = _modes(model)
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
        _restore(modes)
    return any(single)


def check_batches(model: nn.Module, example: torch.Tensor, n_train: int, batch_size: int, probe_size: int) -> None:
    """ConfigError (one line) where a training batch or the probe batch would hold one sample and
    ``model`` has a BatchNorm that sees one value per channel of it (``one_value_per_channel``):
    torch refuses such a batch in training mode ("Expected more than 1 value per channel"), which
    crashed a run mid-epoch when ``n_train % batch_size`` was 1. ``example``: one input, (1, ...)."""
    if not one_value_per_channel(model, example):
        return
    what = "model.norm=batchnorm normalizes each batch by its own statistics and needs at least 2 samples in it"
    if min(batch_size, n_train) == 1:
        raise ConfigError(f"batch_size={batch_size} with {n_train} training samples: {what}; valid: batch_size >= 2")
    if min(probe_size, n_train) == 1:
        raise ConfigError(f"probe_size={probe_size}: {what}; valid: probe_size >= 2")
    if n_train % batch_size == 1:
        fits = [b for b in range(2, n_train + 1) if n_train % b != 1]
        near = sorted(fits, key=lambda b: (abs(b - batch_size), b))[:2]
        raise ConfigError(f"batch_size={batch_size} leaves a last batch of 1 of the {n_train} training samples, and "
                          f"{what}; valid: a batch_size that leaves 0 or at least 2, e.g. "
                          f"{' or '.join(map(str, sorted(near)))}")
