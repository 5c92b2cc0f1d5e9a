"""Datasets as whole tensors: loaded once, normalized, split, and moved to the device.

Batches are later drawn by index from a seeded permutation, so nothing here runs per step. One
module per kind of input: ``vectors`` (N, F), ``images`` (N, C, H, W), ``sequences`` (N, T) token
ids; ``augment`` holds the batched image augmentation, ``files`` the on-disk conventions.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from initlab.config import DatasetConfig
from initlab.data import images, sequences, vectors
from initlab.data.augment import random_crop_flip
from initlab.memory import refused_if_too_large
from initlab.data.tensors import (KINDS, Data, DatasetUnavailable, check_inputs, check_labels,
                                  check_stratified_size)

__all__ = ["Data", "DatasetUnavailable", "Fitted", "KINDS", "LOADERS", "check_sizes", "load_data", "size_params"]

LOADERS: dict[str, Callable[[DatasetConfig], Data]] = {**images.LOADERS, **vectors.LOADERS, **sequences.LOADERS}


def _split_validation(data: Data, val_size: int, seed: int) -> Data:
    """Carve a stratified validation split of ``val_size`` samples out of train."""
    check_stratified_size("dataset.val_size", val_size, data.y_train.numpy(), "training samples")
    idx = np.arange(len(data.y_train))
    train_idx, val_idx = train_test_split(idx, test_size=val_size, stratify=data.y_train.numpy(),
                                          random_state=seed)
    train_idx, val_idx = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    return replace(data, x_train=data.x_train[train_idx], y_train=data.y_train[train_idx],
                   x_val=data.x_train[val_idx], y_val=data.y_train[val_idx])


def input_params(cfg: DatasetConfig) -> str:
    """``noise=1e+300``, ``mean=[0.1307], std=[0.3081]``: the values of ``cfg``'s float parameters,
    those its inputs' values scale with, for ``check_inputs``' line ('' for a set without any)."""
    def text(value) -> str:
        return "[" + ", ".join(text(v) for v in value) + "]" if not isinstance(value, (int, float)) else repr(value)

    specs = [f for f in fields(cfg) if "range" in f.metadata and not f.metadata["range"].integer]
    return ", ".join(f"{f.name}={text(getattr(cfg, f.name))}" for f in specs)


def size_params(cfg: DatasetConfig) -> str:
    """``n_train=4, n_test=4, size=100000``: ``cfg``'s integer parameters but its seeds, the sizes
    its tensors grow with, for a refusal of sizes that do not fit in memory."""
    specs = [f for f in fields(cfg) if "range" in f.metadata and f.metadata["range"].integer and "seed" not in f.name]
    return ", ".join(f"{f.name}={getattr(cfg, f.name)}" for f in specs)


def load_data(cfg: DatasetConfig) -> Data:
    """Load ``cfg.name`` on the CPU (one label per sample, each a class: ``check_labels``; inputs
    finite and not all alike: ``check_inputs``), with a validation split when ``cfg.val_size`` > 0
    and the batched crop-and-flip augmentation when ``cfg.augment`` (a key of image sets' configs
    only). NumPy's overflow warnings while generating are silenced: check_inputs says it in one line.
    Sizes whose tensors cannot be allocated are a ConfigError naming them (initlab.memory)."""
    with np.errstate(over="ignore", invalid="ignore"), refused_if_too_large(f"dataset={cfg.name} ({size_params(cfg)})"):
        data = check_labels(cfg.name, LOADERS[cfg.name](cfg))  # files on disk may disagree with each other
    data = check_inputs(cfg.name, input_params(cfg), data)
    if data.kind != cfg.KIND:
        raise AssertionError(f"{cfg.name}: loader gave {data.kind}, its config declares {cfg.KIND}")
    if cfg.val_size:
        split_seed = cfg.split_seed if hasattr(cfg, "split_seed") else cfg.seed  # synthetic sets: their seed
        data = _split_validation(data, cfg.val_size, split_seed)
    if getattr(cfg, "augment", False):
        data = replace(data, augment=random_crop_flip)
    return data


class Fitted(NamedTuple):
    """What ``check_sizes`` keeps of a dataset it loaded: ``sample``, the Data cut to its first
    sample of each split (its kind, per-sample shape, classes and vocabulary as the whole set's),
    and ``n_train``, the number of training samples after the validation split."""

    sample: Data
    n_train: int


_FITTING: dict[str, Fitted] = {}  # dataset configs check_sizes loaded without error, in this process


def check_sizes(cfg: DatasetConfig, files_here: bool = False) -> Optional[Fitted]:
    """Raise ConfigError (one line) where a split size does not fit the data (``dataset.test_size``,
    ``dataset.val_size``: a stratified split needs every class on both sides) or, for a set read
    from disk, where its files are missing or damaged and cannot be downloaded
    (``DatasetUnavailable``): loaded here once per distinct config, so a sweep is refused before
    its first job, and a download happens once, not in every job at the same time. Sets read from
    disk (``dataset.root``) are loaded only when ``files_here`` (the sweep's jobs run on this
    machine); otherwise they are left to the job, which checks them right after loading: a SLURM
    login node may not hold the files its jobs read. Returns the loaded set's ``Fitted`` (None for
    a set left to the job), for the checks of batch sizes against it."""
    key = repr(cfg)
    if hasattr(cfg, "root") and not files_here:
        return None
    if key not in _FITTING:
        data = load_data(cfg)
        first = {f.name: getattr(data, f.name)[:1] for f in fields(data)
                 if f.name.startswith(("x_", "y_")) and getattr(data, f.name) is not None}
        _FITTING[key] = Fitted(replace(data, **first), len(data.y_train))
    return _FITTING[key]
