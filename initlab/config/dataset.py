"""The dataset group's schemas: each set's sizes, seeds and files, and the shape it gives a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from omegaconf import MISSING

from initlab.config.ranges import SEED_MAX, Checked, _require, number, numbers


@dataclass
class DatasetConfig(Checked):
    """``KIND`` (vectors, images or sequences; a class constant, not a config key) says what the
    data gives a model, so model/dataset fit is checked before anything loads; ``input_shape()``
    is one sample's shape."""

    PREFIX: ClassVar[str] = "dataset."
    KIND: ClassVar[str] = "vectors"
    name: str = MISSING
    val_size: int = number(0, ge=0, integer=True)  # checked against the class counts in initlab.data

    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError


@dataclass
class DigitsConfig(DatasetConfig):
    KIND: ClassVar[str] = "images"
    test_size: int = number(gt=0, integer=True)  # checked against the 1797 samples in initlab.data
    split_seed: int = number(ge=0, le=SEED_MAX, integer=True)
    augment: bool = False  # random crop (zero padding 4) + horizontal flip of each training batch

    def input_shape(self) -> tuple[int, ...]:
        return (1, 8, 8)


CHANNELS = {"mnist": 1, "fashion_mnist": 1, "cifar10": 3}
SIDES = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32}


@dataclass
class TorchvisionConfig(DatasetConfig):
    """MNIST, Fashion-MNIST, CIFAR-10 through torchvision's dataset classes.

    ``split_seed`` seeds the validation split, so it changes the run only when ``val_size`` > 0.
    """

    KIND: ClassVar[str] = "images"
    root: str = MISSING
    download: bool = MISSING
    mean: list[float] = numbers()
    std: list[float] = numbers(gt=0)
    split_seed: int = number(0, ge=0, le=SEED_MAX, integer=True)
    augment: bool = False

    def check(self) -> None:
        _require(bool(self.root.strip()), "dataset.root must be a folder path, got ''")
        channels = CHANNELS.get(self.name)
        for key in ("mean", "std"):
            values = list(getattr(self, key))
            _require(channels is None or len(values) == channels,
                     f"dataset.{key} must have one value per channel ({channels} for {self.name}), got {values}")

    def input_shape(self) -> tuple[int, ...]:
        return (CHANNELS[self.name], SIDES[self.name], SIDES[self.name])


@dataclass
class SyntheticConfig(DatasetConfig):
    """Generated sets: sizes and the seed of the one draw train and test come from."""

    CLASSES: ClassVar[int] = 2  # the classes of a set without an n_classes parameter (moons, circles, xor)
    n_train: int = number(gt=0, integer=True)
    n_test: int = number(gt=0, integer=True)
    seed: int = number(ge=0, le=SEED_MAX, integer=True)

    def check(self) -> None:
        n_classes = getattr(self, "n_classes", None)  # blobs, spiral, majority set it
        _require(n_classes is None or n_classes <= self.n_train,
                 f"dataset.n_classes must be <= dataset.n_train ({self.n_train}: every class needs training "
                 f"samples), got {n_classes}")
        _require(n_classes is not None or self.CLASSES <= self.n_train,  # shapes n_train=2 trained on 2 of 4
                 f"dataset.n_train must be >= {self.CLASSES} (the {self.CLASSES} classes of {self.name}: every "
                 f"class needs training samples), got {self.n_train}")

    def input_shape(self) -> tuple[int, ...]:
        return (2,)


@dataclass
class NoisyConfig(SyntheticConfig):
    """moons, circles, xor, spiral: ``noise`` is the std of Gaussian noise (coordinates or angle)."""

    noise: float = number(ge=0)


@dataclass
class BlobsConfig(SyntheticConfig):
    """make_blobs: the spread of each cluster is ``cluster_std`` (it has no separate noise)."""

    n_features: int = number(gt=0, integer=True)
    n_classes: int = number(ge=2, integer=True)
    cluster_std: float = number(gt=0)

    def input_shape(self) -> tuple[int, ...]:
        return (self.n_features,)


@dataclass
class CirclesConfig(NoisyConfig):
    factor: float = number(ge=0, lt=1)  # make_circles' range


@dataclass
class SpiralConfig(NoisyConfig):
    n_classes: int = number(ge=2, integer=True)


@dataclass
class ShapesConfig(NoisyConfig):
    """Synthetic images of four shape classes; ``noise`` is the std of Gaussian pixel noise."""

    KIND: ClassVar[str] = "images"
    CLASSES: ClassVar[int] = 4  # initlab.data.images.SHAPES
    size: int = number(ge=8, integer=True)  # side in pixels: a shape spans at least 3 pixels
    channels: int = number(gt=0, integer=True)
    augment: bool = False

    def input_shape(self) -> tuple[int, ...]:
        return (self.channels, self.size, self.size)


@dataclass
class MajorityConfig(SyntheticConfig):
    """Token sequences labelled by their most frequent voting token (tokens 0..n_classes-1)."""

    KIND: ClassVar[str] = "sequences"
    vocab_size: int = number(ge=2, integer=True)
    seq_len: int = number(gt=0, integer=True)
    n_classes: int = number(ge=2, integer=True)

    def check(self) -> None:
        super().check()
        _require(self.n_classes <= self.vocab_size, f"dataset.n_classes must be <= dataset.vocab_size "
                                                    f"({self.vocab_size}; the voting tokens are part of the "
                                                    f"vocabulary), got {self.n_classes}")

    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)


@dataclass
class ImdbConfig(DatasetConfig):
    """IMDB reviews from the aclImdb folders under ``root``: a vocabulary of ``vocab_size`` ids
    (padding and unknown included), each review cut or padded to ``seq_len`` tokens."""

    KIND: ClassVar[str] = "sequences"
    root: str = MISSING
    vocab_size: int = number(ge=3, integer=True)
    seq_len: int = number(gt=0, integer=True)
    split_seed: int = number(0, ge=0, le=SEED_MAX, integer=True)

    def check(self) -> None:
        _require(bool(self.root.strip()), "dataset.root must be a folder path, got ''")

    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)
