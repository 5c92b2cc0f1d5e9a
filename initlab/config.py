"""Typed configuration: one dataclass per config-group choice, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` hold the values; these dataclasses hold the types and the range
checks. Hydra rejects unknown keys and badly typed values while composing; ``to_experiment``
turns the composed config into dataclass instances, which run the range checks below and raise
``ConfigError`` with one readable line.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration value is out of range; the message is one line naming value and valid range."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive(name: str, value: float) -> None:
    _require(value > 0, f"{name} must be > 0, got {value}")


class FanMode(str, Enum):
    fan_in = "fan_in"
    fan_out = "fan_out"


class BiasInit(str, Enum):
    zeros = "zeros"
    normal = "normal"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# --- activation -------------------------------------------------------------------------------
@dataclass
class ActivationConfig:
    name: str = MISSING


@dataclass
class LeakyReLUConfig(ActivationConfig):
    negative_slope: float = MISSING

    def __post_init__(self) -> None:
        _require(self.negative_slope >= 0, f"activation.negative_slope must be >= 0, got {self.negative_slope}")


@dataclass
class ELUConfig(ActivationConfig):
    alpha: float = MISSING

    def __post_init__(self) -> None:
        _positive("activation.alpha", self.alpha)


@dataclass
class GELUConfig(ActivationConfig):
    approximate: str = MISSING

    def __post_init__(self) -> None:
        _require(self.approximate in ("none", "tanh"),
                 f"activation.approximate must be one of none, tanh; got {self.approximate!r}")


# --- init -------------------------------------------------------------------------------------
@dataclass
class InitConfig:
    name: str = MISSING


@dataclass
class VarianceScalingConfig(InitConfig):
    """He (Kaiming) inits: Var(W) = factor / fan, fan chosen by ``mode``."""

    factor: float = MISSING
    mode: FanMode = MISSING

    def __post_init__(self) -> None:
        _positive("init.factor", self.factor)


@dataclass
class GainConfig(InitConfig):
    """Xavier (Glorot) and orthogonal inits, scaled by ``gain``."""

    gain: float = MISSING

    def __post_init__(self) -> None:
        _positive("init.gain", self.gain)


@dataclass
class NormalConfig(InitConfig):
    std: float = MISSING

    def __post_init__(self) -> None:
        _positive("init.std", self.std)


@dataclass
class TruncNormalConfig(InitConfig):
    """torch.nn.init.trunc_normal_: ``a`` and ``b`` are absolute cut-offs, not multiples of std."""

    mean: float = MISSING
    std: float = MISSING
    a: float = MISSING
    b: float = MISSING

    def __post_init__(self) -> None:
        _positive("init.std", self.std)
        _require(self.a < self.b, f"init.a must be < init.b, got a={self.a}, b={self.b}")


# --- dataset ----------------------------------------------------------------------------------
@dataclass
class DatasetConfig:
    name: str = MISSING
    val_size: int = 0

    def __post_init__(self) -> None:
        _require(self.val_size >= 0, f"dataset.val_size must be >= 0, got {self.val_size}")


@dataclass
class DigitsConfig(DatasetConfig):
    test_size: int = MISSING
    split_seed: int = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("dataset.test_size", self.test_size)


@dataclass
class TorchvisionConfig(DatasetConfig):
    """MNIST, Fashion-MNIST, CIFAR-10 through torchvision's dataset classes."""

    root: str = MISSING
    download: bool = MISSING
    mean: list[float] = MISSING
    std: list[float] = MISSING
    split_seed: int = 0


@dataclass
class SyntheticConfig(DatasetConfig):
    """scikit-learn generators (blobs, moons, circles) and the 2-D xor and spiral sets."""

    n_train: int = MISSING
    n_test: int = MISSING
    noise: float = 0.0
    seed: int = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("dataset.n_train", self.n_train)
        _positive("dataset.n_test", self.n_test)
        _require(self.noise >= 0, f"dataset.noise must be >= 0, got {self.noise}")


@dataclass
class BlobsConfig(SyntheticConfig):
    n_features: int = MISSING
    n_classes: int = MISSING
    cluster_std: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("dataset.n_features", self.n_features)
        _require(self.n_classes >= 2, f"dataset.n_classes must be >= 2, got {self.n_classes}")
        _positive("dataset.cluster_std", self.cluster_std)


@dataclass
class CirclesConfig(SyntheticConfig):
    factor: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 < self.factor < 1, f"dataset.factor must be in (0, 1), got {self.factor}")


@dataclass
class SpiralConfig(SyntheticConfig):
    n_classes: int = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.n_classes >= 2, f"dataset.n_classes must be >= 2, got {self.n_classes}")


# --- optimizer --------------------------------------------------------------------------------
@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _positive("optimizer.lr", self.lr)
        _require(self.weight_decay >= 0, f"optimizer.weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 <= self.momentum < 1, f"optimizer.momentum must be in [0, 1), got {self.momentum}")
        _require(not self.nesterov or self.momentum > 0, "optimizer.nesterov=true needs optimizer.momentum > 0")


@dataclass
class RMSpropConfig(OptimizerConfig):
    alpha: float = MISSING
    eps: float = MISSING
    momentum: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 < self.alpha < 1, f"optimizer.alpha must be in (0, 1), got {self.alpha}")
        _positive("optimizer.eps", self.eps)


@dataclass
class AdamConfig(OptimizerConfig):
    betas: list[float] = MISSING
    eps: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                 f"optimizer.betas must be two numbers in [0, 1), got {list(self.betas)}")
        _positive("optimizer.eps", self.eps)


# --- model and experiment ---------------------------------------------------------------------
@dataclass
class ModelConfig:
    name: str = MISSING
    width: int = MISSING
    bias_init: BiasInit = MISSING
    bias_std: float = MISSING

    def __post_init__(self) -> None:
        _positive("model.width", self.width)
        _require(self.name == "mlp", f"model must be one of mlp, got {self.name!r}")
        if self.bias_init == BiasInit.normal:
            _positive("model.bias_std (with model.bias_init=normal)", self.bias_std)


@dataclass
class ExperimentConfig:
    activation: ActivationConfig = MISSING
    init: InitConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    model: ModelConfig = MISSING
    depth: int = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    seed: int = MISSING
    device: Device = MISSING
    probe_size: int = MISSING
    threads: Optional[int] = None
    resume: bool = True
    keep_checkpoint: bool = False
    jacobian_every: int = 0

    def __post_init__(self) -> None:
        _positive("depth", self.depth)
        _require(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}")
        _positive("batch_size", self.batch_size)
        _positive("probe_size", self.probe_size)
        _require(self.threads is None or self.threads > 0, f"threads must be > 0 or null, got {self.threads}")
        _require(self.jacobian_every >= 0, f"jacobian_every must be >= 0, got {self.jacobian_every}")


SCHEMAS: dict[str, dict[str, type]] = {
    "activation": {"base": ActivationConfig, "leaky_relu": LeakyReLUConfig, "elu": ELUConfig,
                   "gelu": GELUConfig},
    "init": {"base": InitConfig, "variance_scaling": VarianceScalingConfig, "gain": GainConfig,
             "normal": NormalConfig, "trunc_normal": TruncNormalConfig},
    "dataset": {"digits": DigitsConfig, "torchvision": TorchvisionConfig, "synthetic": SyntheticConfig,
                "blobs": BlobsConfig, "circles": CirclesConfig, "spiral": SpiralConfig},
    "optimizer": {"sgd": SGDConfig, "rmsprop": RMSpropConfig, "adam": AdamConfig},
    "model": {"mlp": ModelConfig},
}


def register_configs() -> None:
    """Store every schema under ``schema/<group>/<name>``; the YAML files extend them."""
    cs = ConfigStore.instance()
    cs.store(name="experiment_schema", node=ExperimentConfig)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)


def _reject_unknown_keys(cfg: DictConfig) -> None:
    """Hydra refuses ``init.factr=2`` itself, but ``+init.factr=2`` would be dropped silently."""
    for group in SCHEMAS:
        node = cfg[group]
        allowed = {f.name for f in fields(OmegaConf.get_type(node))}
        unknown = sorted(set(node.keys()) - allowed)
        _require(not unknown, f"unknown {group} parameter(s) {', '.join(unknown)} for "
                              f"{group}={node.name}; valid: {', '.join(sorted(allowed - {'name'}))}")


def to_experiment(cfg: DictConfig) -> ExperimentConfig:
    """Instantiate the typed config; range violations surface as one-line ``ConfigError``s."""
    _reject_unknown_keys(cfg)
    return OmegaConf.to_object(cfg)
