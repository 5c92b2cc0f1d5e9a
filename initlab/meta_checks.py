"""Checks of a sweep's jobs that need their models' shapes, before the sweep's first job, on
models built on torch's meta device (shapes only, nothing allocated or computed): a batch of one
sample that a BatchNorm cannot normalize, and tensors larger than this machine's memory. Each job
checks the same when it starts (``initlab.measure.normalization.check_batches``,
``initlab.memory.refused_if_too_large``); here the sweep is refused instead of that job failing
after the earlier ones ran (``-m model.width=8,10000000000`` trained the first job, then the
second failed in its folder)."""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import nn

from initlab import kernel_shaping
from initlab.config import ConfigError, Device, ExperimentConfig
from initlab.data import Fitted
from initlab.measure.normalization import check_batches
from initlab.memory import in_gib, machine_bytes
from initlab.models import build_model, inputs_of, sizes_for
from initlab.train.loop import widest_output


class MetaModel(NamedTuple):
    """A job's model on the meta device, with the bytes of its parameters together and of its
    widest module output for one example (``initlab.train.loop.widest_output``)."""

    model: nn.Module
    param_bytes: int
    widest_bytes: int


_MODELS: dict[str, MetaModel] = {}  # by (model, depth, activation, dataset), in this process


def meta_model(exp: ExperimentConfig, data: Fitted) -> MetaModel:
    """``exp``'s model for ``data`` on the meta device, built once per model, depth, activation and
    dataset config. A size too large to be counted in bytes is the build's ConfigError."""
    key = repr((exp.model, exp.depth, exp.activation, exp.dataset))
    if key not in _MODELS:
        shaping = logging.getLogger(kernel_shaping.__name__)  # its solved parameters are the job's to log
        level = shaping.level
        shaping.setLevel(logging.WARNING)
        try:
            with torch.device("meta"):
                model = build_model(exp, data.sample)
        finally:
            shaping.setLevel(level)
        _MODELS[key] = MetaModel(model, sum(p.numel() * p.element_size() for p in model.parameters()),
                                 widest_output(model, data.sample.x_train.to("meta")))
    return _MODELS[key]


def check_batch_sizes(exp: ExperimentConfig, data: Fitted) -> None:
    """The job's ``check_batches`` (a training or probe batch of one sample where a BatchNorm would
    see one value per channel), checked only where such a batch can occur at all."""
    n_train = data.n_train
    if min(exp.batch_size, exp.probe_size, n_train) > 1 and n_train % exp.batch_size != 1:
        return
    check_batches(meta_model(exp, data).model, data.sample.x_train.to("meta"), n_train, exp.batch_size, exp.probe_size)


def check_memory(exp: ExperimentConfig, data: Fitted) -> None:
    """ConfigError (one line) where a CPU job's parameters together, or one module's output for
    its largest batch (probe or training, ``initlab.train.loop.widest_output``), take more bytes
    than this machine's memory and swap (``initlab.memory.machine_bytes``): no allocation can
    succeed. Jobs on a GPU are left to their own check (the sweep may not see their device)."""
    total = machine_bytes()
    if total is None or exp.device == Device.cuda or (exp.device == Device.auto and torch.cuda.is_available()):
        return
    meta = meta_model(exp, data)
    what = sizes_for(exp, inputs_of(data.sample))
    if meta.param_bytes > total:
        raise ConfigError(f"{what} does not fit in memory (its parameters take {in_gib(meta.param_bytes)}, this "
                          f"machine has {in_gib(total)} of memory and swap); valid: smaller sizes")
    rows = min(max(exp.probe_size, exp.batch_size), data.n_train)
    if meta.widest_bytes * rows > total:
        raise ConfigError(f"{what} does not fit in memory (one layer's output for a batch of {rows} takes "
                          f"{in_gib(meta.widest_bytes * rows)}, this machine has {in_gib(total)} of memory and "
                          f"swap); valid: smaller sizes")


def check_job_shapes(exp: ExperimentConfig, data: Fitted, here: bool) -> None:
    """``check_batch_sizes`` for one job of a sweep whose data was loaded, and ``check_memory``
    where the job runs ``here``, on this machine (a SLURM job's node has its own memory: a sweep
    of width 100000 was refused for the 24 GiB of the machine that submitted it)."""
    check_batch_sizes(exp, data)
    if here:
        check_memory(exp, data)


__all__ = ["MetaModel", "check_batch_sizes", "check_job_shapes", "check_memory", "meta_model"]
