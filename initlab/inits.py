"""Which weights an init fills and in what order; the fills themselves are the init choices'
(initlab.choices.inits, each built on torch.nn.init).

The weights are those of every Linear and Conv layer, the stacked q/k/v projection of
nn.MultiheadAttention (one Linear(d, 3d)), and with ``init.embedding`` every nn.Embedding; fans
follow torch's rule (nn.init._calculate_fan_in_and_fan_out: a conv kernel's fan_in is
in_channels * kernel area). Normalization layers keep torch's defaults (weight 1, bias 0).
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import torch
from torch import nn

from initlab.choices.inits import INITS, fan
from initlab.config import ApplyTo, BiasInit, InitConfig, ModelConfig
from initlab.models.branches import init_branches
from initlab.models.sites import Site


log = logging.getLogger(__name__)
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
        fan_in = fan(weight, "fan_in")
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        return nn.init.uniform_(bias, -bound, bound)
    return nn.init.zeros_(bias)


def fill_or_overflow(fill, weight: torch.Tensor, init: InitConfig, layer: nn.Module, name: str) -> None:
    """``fill(weight, init, layer)``; where the init's uniform bound is beyond float32 (torch:
    "from is out of bounds for float", he_uniform with factor 1e80; or twice it is: "expects
    to-from <= numeric_limits<Float>::max()", xavier_uniform with gain 1e39) the weight becomes
    +-inf of random sign, as a normal init of such a scale draws (init=normal
    init.std=1e39), so the run diverges at init, recorded, instead of crashing."""
    try:
        fill(weight, init, layer)
    except RuntimeError as err:
        if not any(words in str(err) for words in ("out of bounds for float", "numeric_limits")):
            raise  # uniform_'s two refusals: a bound beyond float32, or a range (2 bound) beyond it
        log.warning("init=%s: %s's values are beyond float32 (%s): drawn as +-inf", init.name, name,
                    str(err).splitlines()[0])
        weight.copy_(torch.where(torch.rand_like(weight) < 0.5, -math.inf, math.inf))


@torch.no_grad()
def initialize(model: nn.Module, init: InitConfig, model_cfg: ModelConfig,
               x: Optional[torch.Tensor] = None) -> Optional[dict]:
    """Fill every weighted layer's weight by ``init`` and then its bias by ``model_cfg.bias_init``,
    layer by layer in module order (so torch_default draws exactly what building each layer draws).

    ``init.apply_to=head`` fills only the output layer (the module whose weight the model's output
    site names); every other layer keeps the values it was built with.

    A data-dependent init (``init=lsuv``) then rescales the filled model on the batch ``x`` (the
    model's input, on its device) and returns its report (initlab.lsuv.rescale); every other init
    returns None and ignores ``x``. Raises ValueError when a data-dependent init gets no ``x``.
    Then, last, the model's residual-branch init (``model.branch_init``,
    initlab.models.branches.init_branches) rescales or zeroes what was filled; the config refuses
    LSUV with the branch inits that would undo it (fixup, zero_last), so an LSUV report describes
    the network as it trains.
    """
    rescale = INITS[init.name].rescale
    if rescale is not None and x is None:
        raise ValueError(f"init={init.name} rescales the model on a data batch: pass x, the probe batch")
    layers = weighted_layers(model, init.embedding)
    if init.apply_to == ApplyTo.head:
        head = head_name(model)
        layers = [entry for entry in layers if entry[0] == head]
    for name, layer, weight, bias in layers:
        fill_or_overflow(INITS[init.name].fill, weight, init, layer, name)
        if bias is not None:
            fill_bias(bias, weight, model_cfg)
    report = None if rescale is None else rescale(model, init, x)
    init_branches(model, head_name)
    return report
