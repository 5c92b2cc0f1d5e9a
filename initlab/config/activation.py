"""The activation group's schemas, and the rules for kernel shaping (``transform``) beside them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from omegaconf import MISSING

from initlab import choices
from initlab.config.enums import Transform
from initlab.config.model import ModelConfig
from initlab.config.ranges import FLOAT32_MAX, Checked, _require, _require_choice, number


@dataclass
class ActivationConfig(Checked):
    """``transform`` reshapes phi for the network it is built into; its targets (null: dks's
    defaults 0.9, 0.3, 1.5) are TAT's eta (C_f(0) of leaky ReLU nets), tau (C''_f(1) of smooth
    ones) and DKS's zeta (C'_f(1))."""

    PREFIX: ClassVar[str] = "activation."
    name: str = MISSING
    transform: Transform = Transform.none
    c_val_0_target: Optional[float] = number(None, ge=0, le=1, optional=True)
    c_curve_target: Optional[float] = number(None, gt=0, optional=True)
    c_slope_1_target: Optional[float] = number(None, gt=1, optional=True)

    def targets_read(self) -> tuple[str, ...]:
        """The targets ``transform`` reads: TAT's eta for leaky ReLU, its tau otherwise; DKS's zeta."""
        if self.transform == Transform.tat:
            return ("c_val_0_target",) if self.name == "leaky_relu" else ("c_curve_target",)
        return ("c_slope_1_target",) if self.transform == Transform.dks else ()

    def check(self) -> None:
        _require_choice("activation", self.name, choices.ACTIVATIONS)
        reads = self.targets_read()
        for key in ("c_val_0_target", "c_curve_target", "c_slope_1_target"):
            value = getattr(self, key)
            _require(value is None or key in reads,
                     f"activation.{key}={value} changes nothing with activation.transform={self.transform.value} "
                     f"and activation={self.name}; it reads {', '.join(reads) or 'no target'}")


# our activation names -> dks's (gelu by its ``approximate``: gelu_exact or gelu); linear has nothing to shape
DKS_NAMES = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu_exact", "leaky_relu": "leaky_relu",
             "elu": "elu", "selu": "selu", "silu": "swish"}


def dks_name(activation: Any) -> str:
    """dks's name for an activation config; ConfigError where dks has no such activation (linear)
    or another parameterization of it (elu with alpha != 1)."""
    name = activation.name
    _require(name in DKS_NAMES, f"activation.transform={activation.transform.value} needs a nonlinearity dks "
                                f"transforms, got activation={name}; valid: {', '.join(DKS_NAMES)}")
    _require(name != "elu" or activation.alpha == 1.0,
             f"activation.alpha must be 1 with activation.transform (dks's elu), got "
             f"{getattr(activation, 'alpha', None)}")
    _require(name != "relu" or activation.transform != Transform.tat,
             "activation.transform=tat does not take relu (TAT shapes leaky ReLU; dks refuses relu); "
             "use activation=leaky_relu")
    if name == "gelu" and activation.approximate == "tanh":
        return "gelu"
    return DKS_NAMES[name]


def check_transform(activation: ActivationConfig, model: ModelConfig) -> None:
    """ConfigError (one line) unless ``activation.transform`` applies: a dks nonlinearity in a
    plain MLP (initlab.kernel_shaping derives the transform for that structure only)."""
    if activation.transform == Transform.none:
        return
    dks_name(activation)
    norm = getattr(getattr(model, "norm", None), "value", None)
    _require(model.name == "mlp" and norm == "none",
             f"activation.transform={activation.transform.value} needs a plain network, model=mlp with "
             f"model.norm=none; got model={model.name}" + (f" model.norm={norm}" if norm else "")
             + " (residual sums, normalization, pooling and attention are not derived)")


LEAKY_RELU_SLOPE = 0.01  # torch.nn.LeakyReLU's default negative_slope, as conf/activation/leaky_relu.yaml


@dataclass
class LeakyReLUConfig(ActivationConfig):
    negative_slope: float = number(ge=0, le=FLOAT32_MAX)  # torch computes with it in float32

    def check(self) -> None:
        super().check()
        _require(self.transform == Transform.none or self.negative_slope == LEAKY_RELU_SLOPE,
                 f"activation.negative_slope={self.negative_slope} changes nothing with activation.transform="
                 f"{self.transform.value}: dks solves the slope (leave it at {LEAKY_RELU_SLOPE})")


@dataclass
class ELUConfig(ActivationConfig):
    alpha: float = number(gt=0, le=FLOAT32_MAX)  # torch computes with it in float32


@dataclass
class GELUConfig(ActivationConfig):
    approximate: str = MISSING

    def check(self) -> None:
        super().check()
        _require(self.approximate in ("none", "tanh"),
                 f"activation.approximate must be one of none, tanh; got {self.approximate!r}")
