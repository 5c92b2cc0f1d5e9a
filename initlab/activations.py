"""Activation functions by config name, and what "saturated" means for each."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from initlab.config import ActivationConfig

ACTIVATIONS: dict[str, Callable[[ActivationConfig], nn.Module]] = {
    "relu": lambda cfg: nn.ReLU(),
    "tanh": lambda cfg: nn.Tanh(),
    "sigmoid": lambda cfg: nn.Sigmoid(),
    "gelu": lambda cfg: nn.GELU(approximate=cfg.approximate),
    "leaky_relu": lambda cfg: nn.LeakyReLU(cfg.negative_slope),
    "elu": lambda cfg: nn.ELU(cfg.alpha),
    "selu": lambda cfg: nn.SELU(),
    "silu": lambda cfg: nn.SiLU(),
    "linear": lambda cfg: nn.Identity(),
}


def build_activation(cfg: ActivationConfig) -> nn.Module:
    return ACTIVATIONS[cfg.name](cfg)


def saturation_mask(name: str, act: torch.Tensor) -> torch.Tensor:
    """Units in the flat part of a bounded activation (|tanh| > 0.99, sigmoid < 0.01 or > 0.99).

    Unbounded activations never saturate in this sense; they get an all-False mask.
    """
    if name == "tanh":
        return act.abs() > 0.99
    if name == "sigmoid":
        return (act < 0.01) | (act > 0.99)
    return torch.zeros_like(act, dtype=torch.bool)
