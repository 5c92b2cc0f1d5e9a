"""The MLP under study, with a measurement site at every nonlinearity and at the logits."""

from __future__ import annotations

import copy

import torch
from torch import nn

from initlab.models.sites import ActivationSite, Site

NORMS = {"none": None, "batchnorm": nn.BatchNorm1d, "layernorm": nn.LayerNorm}


class MLP(nn.Module):
    """``depth`` hidden blocks Linear(width) -> [norm] -> activation, then an output Linear.

    Parameter names are ``hidden.{i}`` and ``out`` (checkpoints and inits rely on them). Sites
    ``acts.{i}`` (kind hidden, pre-activation = the norm's output when ``norm`` is not none) and
    ``output`` (the logits) give layers 1..depth and depth+1 of layers.csv. ``activation`` is
    copied once per site. Inputs of any shape are flattened to (N, in_features), then pass
    ``input_norm`` when kernel shaping set one.
    """

    def __init__(self, in_features: int, n_classes: int, width: int, depth: int, activation: nn.Module,
                 norm: str = "none"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm {norm!r}; valid: {', '.join(NORMS)}")
        sizes = [in_features] + [width] * depth
        # construction order fixes the default draws of the global RNG: hidden layers, then out
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(width, n_classes)
        self.norms = nn.ModuleList(NORMS[norm](width) for _ in range(depth)) if NORMS[norm] else None
        self.acts = nn.ModuleList(ActivationSite(copy.deepcopy(activation), weight=f"hidden.{i}.weight")
                                  for i in range(depth))
        self.output = Site("output", weight="out.weight")
        self.input_norm: nn.Module | None = None  # kernel shaping's PLN (initlab.kernel_shaping)

    @property
    def linears(self) -> list[nn.Linear]:
        """The Linear layers in order (hidden, then output)."""
        return [*self.hidden, self.out]

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, in_features): what the first Linear reads from the batch ``x``, flattened and,
        where kernel shaping set one, per-location normalized."""
        x = x.flatten(1)
        return self.input_norm(x) if self.input_norm is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.network_input(x)
        for i, (layer, act) in enumerate(zip(self.hidden, self.acts)):
            h = layer(x)
            x = act(self.norms[i](h) if self.norms is not None else h)
        return self.output(self.out(x))
