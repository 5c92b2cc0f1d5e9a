"""Weight initializations by config name, each built on torch.nn.init.

Every init fills a Linear weight in place and draws from exactly the distribution the matching
torch.nn.init function draws from (tests compare them tensor for tensor under the same seed).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from initlab.config import BiasInit, InitConfig, ModelConfig


def _fan(weight: torch.Tensor, mode: str) -> int:
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    return fan_in if mode == "fan_in" else fan_out


def _variance_normal(weight: torch.Tensor, factor: float, mode: str) -> torch.Tensor:
    """N(0, factor/fan): kaiming_normal_ with gain^2 = factor (factor 2 is He et al. for ReLU)."""
    return nn.init.normal_(weight, 0.0, math.sqrt(factor / _fan(weight, mode)))


def _variance_uniform(weight: torch.Tensor, factor: float, mode: str) -> torch.Tensor:
    """U(-b, b) with b = sqrt(3 factor/fan), so Var = factor/fan: kaiming_uniform_ with gain^2 = factor."""
    bound = math.sqrt(3.0 * factor / _fan(weight, mode))
    return nn.init.uniform_(weight, -bound, bound)


INITS: dict[str, Callable[[torch.Tensor, InitConfig], torch.Tensor]] = {
    "he_normal": lambda w, c: _variance_normal(w, c.factor, c.mode.value),
    "he_uniform": lambda w, c: _variance_uniform(w, c.factor, c.mode.value),
    "lecun_normal": lambda w, c: _variance_normal(w, 1.0, "fan_in"),
    "lecun_uniform": lambda w, c: _variance_uniform(w, 1.0, "fan_in"),
    "xavier_normal": lambda w, c: nn.init.xavier_normal_(w, gain=c.gain),
    "xavier_uniform": lambda w, c: nn.init.xavier_uniform_(w, gain=c.gain),
    "orthogonal": lambda w, c: nn.init.orthogonal_(w, gain=c.gain),
    "normal": lambda w, c: nn.init.normal_(w, 0.0, c.std),
    "trunc_normal": lambda w, c: nn.init.trunc_normal_(w, c.mean, c.std, c.a, c.b),
    "zero": lambda w, c: nn.init.zeros_(w),
}


@torch.no_grad()
def initialize(model: nn.Module, init: InitConfig, model_cfg: ModelConfig) -> None:
    """Apply ``init`` to every Linear weight (the output layer too) and the bias init to its bias."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            INITS[init.name](layer.weight, init)
            if model_cfg.bias_init == BiasInit.normal:
                nn.init.normal_(layer.bias, 0.0, model_cfg.bias_std)
            else:
                nn.init.zeros_(layer.bias)
