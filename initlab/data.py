"""Datasets as whole tensors: loaded once, standardized, split, and moved to the device.

Batches are later drawn by index from a seeded permutation, so nothing here runs per step.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from sklearn import datasets as skdata
from sklearn.model_selection import train_test_split

from initlab.config import ConfigError, DatasetConfig


class DatasetUnavailable(ConfigError):
    """The dataset's files are missing and could not be downloaded."""


@dataclass(frozen=True)
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: Optional[torch.Tensor] = None
    y_val: Optional[torch.Tensor] = None

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return int(torch.cat([self.y_train, self.y_test]).max()) + 1

    def to(self, device: torch.device) -> "Data":
        moved = {k: (v.to(device) if v is not None else None) for k, v in vars(self).items()}
        return Data(**moved)


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)


def _standardized(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Per-feature standardization with the training statistics (constant features stay 0)."""
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(a - mean) / std for a in (x_train, *others)]


def _from_arrays(x_train, y_train, x_test, y_test) -> Data:
    x_train, x_test = _standardized(x_train, x_test)
    return Data(*_tensors(x_train, y_train), *_tensors(x_test, y_test))


def _check_stratified_size(name: str, size: int, y: np.ndarray, what: str) -> None:
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


def _digits(cfg) -> Data:
    x, y = skdata.load_digits(return_X_y=True)
    _check_stratified_size("dataset.test_size", cfg.test_size, y, "samples")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=cfg.test_size, stratify=y, random_state=cfg.split_seed)
    return _from_arrays(x_train, y_train, x_test, y_test)


def _synthetic(generate: Callable[[object, int, np.random.Generator], tuple]) -> Callable:
    """Wrap a generator of (x, y) so that train and test come from one seeded draw."""

    def load(cfg) -> Data:
        rng = np.random.default_rng(cfg.seed)
        x, y = generate(cfg, cfg.n_train + cfg.n_test, rng)
        order = rng.permutation(len(y))
        x, y = x[order], y[order]
        return _from_arrays(x[:cfg.n_train], y[:cfg.n_train], x[cfg.n_train:], y[cfg.n_train:])

    return load


def _blobs(cfg, n, rng):
    return skdata.make_blobs(n_samples=n, n_features=cfg.n_features, centers=cfg.n_classes,
                             cluster_std=cfg.cluster_std, random_state=cfg.seed)


def _moons(cfg, n, rng):
    return skdata.make_moons(n_samples=n, noise=cfg.noise, random_state=cfg.seed)


def _circles(cfg, n, rng):
    return skdata.make_circles(n_samples=n, noise=cfg.noise, factor=cfg.factor, random_state=cfg.seed)


def _xor(cfg, n, rng):
    x = rng.uniform(-1.0, 1.0, size=(n, 2))
    y = (x[:, 0] * x[:, 1] < 0).astype(np.int64)
    return x + cfg.noise * rng.standard_normal(x.shape), y


def _spiral(cfg, n, rng):
    y = np.arange(n) % cfg.n_classes
    t = rng.uniform(0.0, 1.0, size=n)
    angle = 2 * math.pi * y / cfg.n_classes + 3 * math.pi * t + cfg.noise * rng.standard_normal(n)
    return np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1), y


TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def _torchvision(cfg) -> Data:
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_CLASSES[cfg.name])
    root = Path(cfg.root).expanduser().resolve()
    existing = _existing_dirs(root)
    try:
        train, test = (cls(str(root), train=flag, download=cfg.download) for flag in (True, False))
    except Exception as err:  # offline download or missing files: say where the files belong
        _remove_new_empty_dirs(root, existing)
        how = f"the download failed ({_short_reason(err)})" if cfg.download else "download=false"
        raise DatasetUnavailable(f"dataset {cfg.name}: files not found under {root} and {how}; put "
                                 f"torchvision's {cls.__name__} files in {_layout(cls)} there or set "
                                 f"dataset.root") from None
    return Data(*_normalized(train, cfg), *_normalized(test, cfg))


def _layout(cls: type) -> str:
    """Where torchvision looks for a dataset's files, relative to root (MNIST/raw, cifar-10-batches-py)."""
    return getattr(cls, "base_folder", f"{cls.__name__}/raw")


def _short_reason(err: Exception) -> str:
    """A few words for why a download failed: torchvision's message lists every mirror and URL."""
    text = " ".join(str(err).split())
    found = re.search(r"<urlopen error (?:\[Errno [-\d]+\] )?(.+?)>", text)
    return (found.group(1) if found else text)[:50].strip() or type(err).__name__


def _existing_dirs(root: Path) -> set[Path]:
    """``root``'s folders (and its ancestors) that exist now, so a failed load removes only its own."""
    dirs = {p for p in (root, *root.parents) if p.is_dir()}
    if root.is_dir():
        dirs.update(p for p in root.rglob("*") if p.is_dir())
    return dirs


def _remove_new_empty_dirs(root: Path, existing: set[Path]) -> None:
    """Remove the empty folders a failed download created under (and including) ``root``."""
    top = root
    while top not in existing and top.parent not in existing:
        top = top.parent
    candidates = [top, *(p for p in top.rglob("*") if p.is_dir())] if top.is_dir() else []
    for folder in sorted(candidates, key=lambda p: len(p.parts), reverse=True):
        if folder not in existing and not any(folder.iterdir()):
            folder.rmdir()


def _normalized(ds, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images -> [0, 1] -> per-channel (x - mean) / std -> flat (C*H*W) float vectors."""
    images = torch.as_tensor(np.asarray(ds.data)).float().div_(255.0)
    if images.ndim == 3:  # grey images (N, H, W)
        images = images.unsqueeze(-1)
    mean = torch.tensor(cfg.mean, dtype=torch.float32)
    std = torch.tensor(cfg.std, dtype=torch.float32)
    images = ((images - mean) / std).permute(0, 3, 1, 2)
    return images.reshape(len(images), -1).contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)


LOADERS: dict[str, Callable[[DatasetConfig], Data]] = {
    "digits": _digits,
    "mnist": _torchvision,
    "fashion_mnist": _torchvision,
    "cifar10": _torchvision,
    "blobs": _synthetic(_blobs),
    "moons": _synthetic(_moons),
    "circles": _synthetic(_circles),
    "xor": _synthetic(_xor),
    "spiral": _synthetic(_spiral),
}


def _split_validation(data: Data, val_size: int, seed: int) -> Data:
    """Carve a stratified validation split of ``val_size`` samples out of train."""
    _check_stratified_size("dataset.val_size", val_size, data.y_train.numpy(), "training samples")
    idx = np.arange(len(data.y_train))
    train_idx, val_idx = train_test_split(idx, test_size=val_size, stratify=data.y_train.numpy(),
                                          random_state=seed)
    train_idx, val_idx = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    return replace(data, x_train=data.x_train[train_idx], y_train=data.y_train[train_idx],
                   x_val=data.x_train[val_idx], y_val=data.y_train[val_idx])


def load_data(cfg: DatasetConfig) -> Data:
    """Load ``cfg.name`` on the CPU, with a validation split when ``cfg.val_size`` > 0."""
    data = LOADERS[cfg.name](cfg)
    if cfg.val_size:
        split_seed = cfg.split_seed if hasattr(cfg, "split_seed") else cfg.seed  # synthetic sets: their seed
        data = _split_validation(data, cfg.val_size, split_seed)
    return data
