"""``Data``, the whole-tensor dataset every loader returns, and the helpers loaders share."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from initlab.config import ConfigError

KINDS = ("vectors", "images", "sequences")

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class DatasetUnavailable(ConfigError):
    """The dataset's files are missing and could not be downloaded."""


@dataclass(frozen=True)
class Data:
    """Train/test (and optional validation) tensors, as models take them.

    ``x`` is float32 (N, F) for ``kind="vectors"``, float32 (N, C, H, W) for ``"images"`` and
    int64 token ids (N, T) for ``"sequences"`` (ids in [0, vocab_size)); ``y`` is int64 (N,).
    ``augment``, when set, maps a training batch and a torch.Generator to an augmented batch of
    the same shape on the batch's device (see ``initlab.data.augment``). ``n_classes`` defaults to
    the largest label + 1. ``pad_id``: the token id that fills sequences shorter than T (a model
    masks it out of attention, pooling and statistics), None where every position is content.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: Optional[torch.Tensor] = None
    y_val: Optional[torch.Tensor] = None
    kind: str = "vectors"
    n_classes: Optional[int] = None
    vocab_size: Optional[int] = None
    pad_id: Optional[int] = None
    augment: Optional[Augment] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Data.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.n_classes is None:
            object.__setattr__(self, "n_classes", int(torch.cat([self.y_train, self.y_test]).max()) + 1)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape: (F,), (C, H, W) or (T,)."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_features(self) -> int:
        """prod(input_shape): the input width of a model that flattens."""
        return math.prod(self.input_shape)

    def to(self, device: torch.device) -> "Data":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in values.items()}
        return Data(**moved)


def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)


def standardized(x_train: np.ndarray, *others: np.ndarray, axis=0) -> list[np.ndarray]:
    """Standardization with the training statistics over ``axis`` (0: per feature; (0, 2, 3): per
    channel of images); constant features stay 0.

    A feature whose mean or spread is not finite has no standardized value: it becomes NaN, for
    ``check_inputs`` to refuse in one line. Values beyond about 1e154 overflow their square in
    float64 (moons with noise=1e300): the std was inf, every input (a - mean) / inf = 0, and a run
    trained on zeros, recorded completed, with NumPy's overflow warning the only sign of it, which
    is why the warnings are silenced here.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = x_train.mean(axis=axis, keepdims=True), x_train.std(axis=axis, keepdims=True)
        finite = np.isfinite(mean) & np.isfinite(std)
        std = np.where(std > 0, std, 1.0)
        out = [(a - mean) / std for a in (x_train, *others)]
        return out if finite.all() else [np.where(finite, a, np.nan) for a in out]


def check_inputs(name: str, params: str, data: Data) -> Data:
    """``data`` when its inputs can be trained on; else a one-line ConfigError naming dataset
    ``name``, the values ``params`` of the parameters its inputs scale with (``noise=1e+300``; ''
    for a set without any) and what goes wrong, before any model is built:

    * an input that is not finite, in any split (a generator's values, or their spread, overflow:
      ``standardized`` gives NaN where its statistics do; torchvision's sets with a ``std`` too
      small for float32);
    * training inputs whose every feature is constant (after standardization all 0): every sample
      alike, so nothing can be learnt and every activation statistic is that of one input.

    Token ids (sequences) are integers: nothing to check.
    """
    if data.kind == "sequences":
        return data
    names = ", ".join(part.split("=")[0] for part in params.split(", ")) if params else "the settings"
    for split, x in (("training", data.x_train), ("test", data.x_test), ("validation", data.x_val)):
        if x is not None and not bool(torch.isfinite(x).all()):
            raise ConfigError(f"dataset {name}: {params or 'its settings'} gives {split} inputs that are not finite "
                              f"after standardization (the values or their spread overflow); valid: values of "
                              f"{names} under which every input is finite")
    n = len(data.x_train)
    if n and bool((data.x_train == data.x_train[:1]).all()):
        alike = "a single sample" if n == 1 else f"all {n} samples alike"
        given = f" ({params})" if params else ""
        raise ConfigError(f"dataset {name}{given}: every feature of the training inputs is constant after "
                          f"standardization ({alike}: nothing to learn); valid: training samples that differ")
    return data


def balanced_labels(sizes: Sequence[int], n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Labels of consecutive splits of ``sizes`` samples (train, test), each split balanced on its
    own, in a seeded random order: a split of s samples holds s // n_classes of every class, and its
    first s % n_classes classes (0, 1, ...) one more. Balanced over train and test together, then
    shuffled and cut, each split's counts were left to chance (shapes' default test split held 113
    to 139 of a class for 125), so a constant predictor's test accuracy was not the chance
    1 / n_classes the analysis takes it to be."""
    return np.concatenate([rng.permutation(np.arange(size) % n_classes) for size in sizes])


def check_stratified_size(name: str, size: int, y: np.ndarray, what: str) -> None:
    """A stratified split of ``y`` into ``size`` and the rest needs every class on both sides.

    scikit-learn refuses fewer samples than classes on either side, or a class with one sample;
    this says so up front, as a ConfigError naming the field, its value and the valid range.
    """
    counts = np.bincount(y)
    counts = counts[counts > 0]
    n, k = len(y), len(counts)
    if counts.min() < 2:
        raise ConfigError(f"{name}={size} needs a stratified split, which needs 2 or more samples of every "
                          f"class; the {n} {what} have a class with 1")
    if not k <= size <= n - k:
        raise ConfigError(f"{name} must be in [{k}, {n - k}] (a stratified split of {n} {what} in {k} "
                          f"classes), got {size}")


def check_labels(name: str, data: Data) -> Data:
    """``data`` when every split has one label per sample and every label is a class in
    [0, n_classes); else the one-line DatasetUnavailable naming dataset ``name`` and the split
    (files that disagree, e.g. a labels file from another copy of the set)."""
    splits = [("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)]
    if data.y_val is not None:
        splits.append(("validation", data.x_val, data.y_val))
    for split, x, y in splits:
        if len(x) != len(y):
            raise DatasetUnavailable(f"dataset {name}: the {split} files hold {len(x)} samples but {len(y)} "
                                     "labels; valid: one label per sample")
        if len(y) and not 0 <= int(y.min()) <= int(y.max()) < data.n_classes:
            raise DatasetUnavailable(f"dataset {name}: the {split} labels span {int(y.min())}..{int(y.max())}; "
                                     f"valid: classes 0..{data.n_classes - 1}")
    return data
