"""The model group's schemas, and how each model's fields relate to the top-level ``depth``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from omegaconf import MISSING

from initlab.config.enums import BiasInit, BranchInit, ConvNorm, Norm
from initlab.config.ranges import Checked, _require, number, numbers


MODELS = ("mlp", "resmlp", "cnn", "resnet18", "transformer")  # initlab.models.MODELS builds them


@dataclass
class ModelConfig(Checked):
    """Fields every model has: the bias init of every Linear/Conv (initlab.inits)."""

    PREFIX: ClassVar[str] = "model."
    EMBEDDINGS: ClassVar[bool] = False  # whether the model has nn.Embedding layers (init.embedding acts)
    FIXED_DEPTH: ClassVar[Optional[int]] = None  # the depth of a model that has one whatever ``depth`` says
    name: str = MISSING
    bias_init: BiasInit = MISSING
    bias_std: float = number(ge=0)

    def check(self) -> None:
        _require(self.name in MODELS, f"model must be one of {', '.join(MODELS)}, got {self.name!r}")
        if self.bias_init == BiasInit.normal:
            _require(self.bias_std > 0, f"model.bias_std (with model.bias_init=normal) must be > 0, "
                                        f"got {self.bias_std}")
        else:  # a value that would change nothing is refused rather than ignored
            _require(self.bias_std == 0, f"model.bias_std must be 0 with model.bias_init={self.bias_init.value} "
                                         f"(set model.bias_init=normal to use it), got {self.bias_std}")

    def check_depth(self, depth: int) -> None:
        """Relations between the top-level ``depth`` and this model's fields (ConfigError)."""


def _check_fixup_norm(branch_init: BranchInit, norm: str, model: str) -> None:
    """Fixup's network has no normalization (Zhang et al. 2019): a norm would divide its scaling
    away, and a norm after a zeroed layer divides by sqrt(eps)."""
    _require(branch_init != BranchInit.fixup or norm == "none",
             f"model.branch_init=fixup needs a network without normalization (Zhang et al. 2019), got "
             f"model={model} with model.norm={norm}: set model.norm=none")


@dataclass
class MLPConfig(ModelConfig):
    """``depth`` hidden Linear(width) [-> norm] -> activation blocks, then the output Linear."""

    width: int = number(gt=0, integer=True)
    norm: Norm = Norm.none


@dataclass
class ResMLPConfig(MLPConfig):
    """A plain stem of 1 (odd depth) or 2 (even depth) Linear layers, (depth - 1) // 2 residual
    blocks of two Linear layers, the output Linear: ``depth`` hidden Linear layers as in ``mlp``."""

    preact: bool = False
    branch_init: BranchInit = BranchInit.default

    def check(self) -> None:
        super().check()
        _check_fixup_norm(self.branch_init, self.norm.value, "resmlp")

    def check_depth(self, depth: int) -> None:
        _require(depth >= 3, f"depth must be >= 3 with model=resmlp (a stem of 1 or 2 Linear layers and at "
                             f"least one residual block of 2), got {depth}")


@dataclass
class CNNConfig(ModelConfig):
    """``depth`` 3x3 conv layers spread over ``len(channels)`` stages (max-pool between stages)."""

    channels: list[int] = numbers(gt=0, integer=True)
    norm: ConvNorm = ConvNorm.none
    residual: bool = False
    branch_init: BranchInit = BranchInit.default

    def check(self) -> None:
        super().check()
        _require(self.branch_init == BranchInit.default or self.residual,
                 f"model.branch_init={self.branch_init.value} needs residual branches: set model.residual=true "
                 f"(model=cnn without it has none)")
        _check_fixup_norm(self.branch_init, self.norm.value, "cnn")

    def check_depth(self, depth: int) -> None:
        stages = len(self.channels)
        _require(depth >= stages, f"depth must be >= {stages} with model=cnn (one conv layer per stage of "
                                  f"model.channels={list(self.channels)} at least), got {depth}")


@dataclass
class ResNet18Config(ModelConfig):
    """torchvision's ResNet-18; its depth is fixed: the run's ``depth`` is 18 whatever the top-level
    ``depth`` says (ExperimentConfig), so its records and a sweep's duplicates say so."""

    FIXED_DEPTH: ClassVar[Optional[int]] = 18

    cifar_stem: bool = True
    norm: ConvNorm = ConvNorm.batchnorm
    branch_init: BranchInit = BranchInit.default

    def check(self) -> None:
        super().check()
        _check_fixup_norm(self.branch_init, self.norm.value, "resnet18")


@dataclass
class TransformerConfig(ModelConfig):
    """``depth`` encoder layers of torch.nn.TransformerEncoderLayer."""

    EMBEDDINGS: ClassVar[bool] = True

    d_model: int = number(gt=0, integer=True)
    nhead: int = number(gt=0, integer=True)
    dim_feedforward: int = number(gt=0, integer=True)
    norm_first: bool = False
    dropout: float = number(0.0, ge=0, lt=1)

    def check(self) -> None:
        super().check()
        _require(self.d_model % self.nhead == 0, f"model.d_model must be a multiple of model.nhead "
                                                 f"({self.nhead}), got {self.d_model}")
