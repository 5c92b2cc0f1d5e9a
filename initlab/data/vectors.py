"""Feature-vector sets (N, F): scikit-learn's generators and two of our own, drawn from a seed.

Train and test come from one seeded draw, split after a seeded shuffle, and are standardized per
feature with the training statistics.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from sklearn import datasets as skdata

from initlab.data.tensors import Data, standardized, tensors


def from_arrays(x_train, y_train, x_test, y_test, n_classes=None) -> Data:
    x_train, x_test = standardized(x_train, x_test)
    return Data(*tensors(x_train, y_train), *tensors(x_test, y_test), kind="vectors", n_classes=n_classes)


def synthetic(generate: Callable[[object, int, np.random.Generator], tuple]) -> Callable:
    """Wrap a generator of (x, y) so that train and test come from one seeded draw."""

    def load(cfg) -> Data:
        rng = np.random.default_rng(cfg.seed)
        x, y = generate(cfg, cfg.n_train + cfg.n_test, rng)
        order = rng.permutation(len(y))
        x, y = x[order], y[order]
        return from_arrays(x[:cfg.n_train], y[:cfg.n_train], x[cfg.n_train:], y[cfg.n_train:],
                           getattr(cfg, "n_classes", None))  # the classes asked for, drawn or not

    return load


def blobs(cfg, n, rng):
    return skdata.make_blobs(n_samples=n, n_features=cfg.n_features, centers=cfg.n_classes,
                             cluster_std=cfg.cluster_std, random_state=cfg.seed)


def moons(cfg, n, rng):
    return skdata.make_moons(n_samples=n, noise=cfg.noise, random_state=cfg.seed)


def circles(cfg, n, rng):
    return skdata.make_circles(n_samples=n, noise=cfg.noise, factor=cfg.factor, random_state=cfg.seed)


def xor(cfg, n, rng):
    x = rng.uniform(-1.0, 1.0, size=(n, 2))
    y = (x[:, 0] * x[:, 1] < 0).astype(np.int64)
    return x + cfg.noise * rng.standard_normal(x.shape), y


def spiral(cfg, n, rng):
    y = np.arange(n) % cfg.n_classes
    t = rng.uniform(0.0, 1.0, size=n)
    angle = 2 * math.pi * y / cfg.n_classes + 3 * math.pi * t + cfg.noise * rng.standard_normal(n)
    return np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1), y


LOADERS = {name: synthetic(gen) for name, gen in
           {"blobs": blobs, "moons": moons, "circles": circles, "xor": xor, "spiral": spiral}.items()}
