"""The plain MLP's forward over K stacked members written as batched matmuls.

``torch.func.vmap`` over ``functional_call`` runs any architecture, but at the grid's sizes its
per-operator overhead and its separate bias add cost about a third of a step (benchmarks/README.md).
For initlab.models.mlp.MLP, the model of the reference grid, each Linear here is one
``torch.baddbmm`` (bias and product fused) on the stacked (K, out, in) weights (the first one
with inputs shared by all members: one matmul of all members' weights), and everything between
the Linears (LayerNorm, activation, kernel shaping's input PLN) is the member module's own
elementwise or last-axis code applied to the (K, width, B) block. Other models keep vmap
(initlab.ensemble.stack). Values equal the per-member forward to float rounding.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from initlab.models.mlp import MLP


def supports(model: nn.Module) -> bool:
    """True when ``direct_forward`` computes ``model``'s forward: an initlab MLP (its norm none or
    LayerNorm; BatchNorm members are never stacked, initlab.ensemble.unbatchable)."""
    return type(model) is MLP and (model.norms is None or all(isinstance(n, nn.LayerNorm) for n in model.norms))


def _linear(h: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """(K, out, B) = weight @ h + bias for h (K, in, B), or (in, B) shared by all members (then
    one (K·out, in) @ (in, B) matmul), weight (K, out, in), bias (K, out).

    Activations are kept feature-major, (K, features, B), so that no weight is ever transposed:
    the weight gradient g @ hᵀ comes out in the weight's own layout, which autograd takes as it is
    (a transposed weight cost one copy per layer and step)."""
    k, out, fan_in = weight.shape
    if h.dim() == 2:
        flat = weight.reshape(k * out, fan_in)
        z = flat @ h if bias is None else torch.addmm(bias.reshape(k * out, 1), flat, h)
        return z.view(k, out, h.shape[1])
    if bias is None:
        return torch.bmm(weight, h)
    return torch.baddbmm(bias.unsqueeze(-1), weight, h)


def _layer_norm(h: torch.Tensor, norm: nn.LayerNorm, weight: Optional[torch.Tensor],
                bias: Optional[torch.Tensor]) -> torch.Tensor:
    """nn.LayerNorm over the features of h (K, width, B) with each member's own affine (K, width)."""
    h = F.layer_norm(h.transpose(1, 2), norm.normalized_shape, eps=norm.eps).transpose(1, 2)
    if weight is not None:
        h = h * weight.unsqueeze(-1)
    if bias is not None:
        h = h + bias.unsqueeze(-1)
    return h


def direct_forward(model: MLP, params: Mapping[str, torch.Tensor], x: torch.Tensor, shared: bool) -> torch.Tensor:
    """Logits (K, B, C) of the K members whose stacked parameters are ``params`` (name -> (K, *shape))
    for the architecture of ``model``; ``x`` (B, ...) the same inputs for all (``shared``), else
    (K, B, ...) one batch per member. Raises KeyError for a parameter ``params`` lacks."""
    h = x.flatten(1) if shared else x.flatten(2)
    if model.input_norm is not None:
        h = model.input_norm(h.reshape(-1, h.shape[-1])).reshape(h.shape)
    h = h.transpose(-1, -2)
    for i, act in enumerate(model.acts):
        h = _linear(h, params[f"hidden.{i}.weight"], params.get(f"hidden.{i}.bias"))
        if model.norms is not None:
            h = _layer_norm(h, model.norms[i], params.get(f"norms.{i}.weight"), params.get(f"norms.{i}.bias"))
        h = act.activation(h)
    return _linear(h, params["out.weight"], params.get("out.bias")).transpose(1, 2)
