"""Weight initializations by config name, each built on torch.nn.init.

Every init fills a weight in place and draws from exactly the distribution the matching
torch.nn.init function draws from (tests compare them tensor for tensor under the same seed).
The weights are those of every Linear and Conv layer, the stacked q/k/v projection of
nn.MultiheadAttention (one Linear(d, 3d)), and with ``init.embedding`` every nn.Embedding; fans
follow torch's rule (nn.init._calculate_fan_in_and_fan_out: a conv kernel's fan_in is
in_channels * kernel area). Normalization layers keep torch's defaults (weight 1, bias 0).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from initlab.config import ApplyTo, BiasInit, InitConfig, ModelConfig
from initlab.models.sites import Site


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


def torch_default(weight: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """What torch draws for ``layer``'s weight when it builds the layer: U(+-1/sqrt(fan_in)) for
    Linear and Conv (kaiming_uniform_ with a=sqrt(5), gain^2 = 1/3, so sigma_w^2 = 1/3), N(0, 1)
    for Embedding, xavier_uniform_ for MultiheadAttention's in_proj_weight."""
    if isinstance(layer, nn.Embedding):
        return nn.init.normal_(weight)
    if isinstance(layer, nn.MultiheadAttention):
        return nn.init.xavier_uniform_(weight)
    return nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


INITS: dict[str, Callable[[torch.Tensor, InitConfig], torch.Tensor]] = {
    "he_normal": lambda w, c: _variance_normal(w, c.factor, c.mode.value),
    "he_uniform": lambda w, c: _variance_uniform(w, c.factor, c.mode.value),
    "lecun_normal": lambda w, c: _variance_normal(w, 1.0, "fan_in"),
    "lecun_uniform": lambda w, c: _variance_uniform(w, 1.0, "fan_in"),
    "xavier_normal": lambda w, c: nn.init.xavier_normal_(w, gain=c.gain),
    "xavier_uniform": lambda w, c: nn.init.xavier_uniform_(w, gain=c.gain),
    "orthogonal": lambda w, c: nn.init.orthogonal_(w, gain=c.gain),
    "normal": lambda w, c: nn.init.normal_(w, 0.0, c.std),
    "small_normal": lambda w, c: nn.init.normal_(w, 0.0, c.std),
    "trunc_normal": lambda w, c: nn.init.trunc_normal_(w, c.mean, c.std, c.a, c.b),
    "zero": lambda w, c: nn.init.zeros_(w),
    "torch_default": lambda w, c: nn.init.kaiming_uniform_(w, a=math.sqrt(5)),  # as a Linear/Conv; see torch_default
}


Weighted = tuple[str, nn.Module, torch.Tensor, Optional[torch.Tensor]]  # name, layer, weight, bias


def weighted_layers(model: nn.Module, embedding: bool) -> list[Weighted]:
    """(module name, module, weight, bias or None) of every layer an init fills, in module order:
    Linear, Conv, MultiheadAttention's in_proj (when it has one), Embedding if ``embedding``."""
    out = []
    for name, layer in model.named_modules():
        if isinstance(layer, (nn.Linear, nn.modules.conv._ConvNd)):
            out.append((name, layer, layer.weight, layer.bias))
        elif isinstance(layer, nn.MultiheadAttention) and layer.in_proj_weight is not None:
            out.append((name, layer, layer.in_proj_weight, layer.in_proj_bias))
        elif embedding and isinstance(layer, nn.Embedding):
            out.append((name, layer, layer.weight, None))
    return out


def head_name(model: nn.Module) -> str:
    """The module name of the output layer: the one whose weight the output site names."""
    names = [m.weight for m in model.modules() if isinstance(m, Site) and m.kind == "output" and m.weight]
    if len(names) != 1:
        raise ValueError(f"init.apply_to=head needs one output site naming its weight, found {len(names)}")
    return names[0].rsplit(".", 1)[0]


def fill_bias(bias: torch.Tensor, weight: torch.Tensor, model_cfg: ModelConfig) -> torch.Tensor:
    """zeros; N(0, bias_std^2); or torch_default: U(+-1/sqrt(fan_in)) with the weight's fan_in,
    as nn.Linear/nn.Conv2d's reset_parameters draws it."""
    if model_cfg.bias_init == BiasInit.normal:
        return nn.init.normal_(bias, 0.0, model_cfg.bias_std)
    if model_cfg.bias_init == BiasInit.torch_default:
        fan_in = _fan(weight, "fan_in")
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        return nn.init.uniform_(bias, -bound, bound)
    return nn.init.zeros_(bias)


@torch.no_grad()
def initialize(model: nn.Module, init: InitConfig, model_cfg: ModelConfig) -> None:
    """Fill every weighted layer's weight by ``init`` and then its bias by ``model_cfg.bias_init``,
    layer by layer in module order (so torch_default draws exactly what building each layer draws).

    ``init.apply_to=head`` fills only the output layer (the module whose weight the model's output
    site names); every other layer keeps the values it was built with.
    """
    layers = weighted_layers(model, init.embedding)
    if init.apply_to == ApplyTo.head:
        head = head_name(model)
        layers = [entry for entry in layers if entry[0] == head]
    for _, layer, weight, bias in layers:
        if init.name == "torch_default":  # its fill depends on the layer type, not only the tensor
            torch_default(weight, layer)
        else:
            INITS[init.name](weight, init)
        if bias is not None:
            fill_bias(bias, weight, model_cfg)
