"""Residual MLP with the plain MLP's weight layers, so depth studies compare like with like.

``depth`` counts hidden Linear layers as ``mlp`` does: an input projection Linear(in, width) and
(depth - 1) / 2 residual blocks of two Linear(width, width) each, then the output Linear. With the
same width and norm it has exactly the plain MLP's parameters (one norm per hidden Linear too).

Post-activation blocks (He et al. 2016a): x -> act(x + norm(fc2(act(norm(fc1(x)))))), after a
projection Linear -> norm -> act. Pre-activation blocks (He et al. 2016b, ``preact``):
x -> x + fc2(act(norm(fc1(act(norm(x)))))), after a bare projection, with norm -> act before the
head. Images are flattened.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from initlab.models.sites import ActivationSite, Site

ActFactory = Callable[[], nn.Module]


def make_norm(norm: str, width: int) -> nn.Module:
    """BatchNorm1d / LayerNorm over ``width`` features, or the identity for ``none``."""
    if norm == "batchnorm":
        return nn.BatchNorm1d(width)
    if norm == "layernorm":
        return nn.LayerNorm(width)
    return nn.Identity()


class ResidualBlock(nn.Module):
    """Two Linear(width, width) with a skip; sites at both activations and at the block's output."""

    def __init__(self, prefix: str, width: int, norm: str, activation: ActFactory, preact: bool):
        super().__init__()
        self.preact = preact
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.norm1, self.norm2 = make_norm(norm, width), make_norm(norm, width)
        if preact:  # act1 sees the residual stream (no single weight feeds it), act2 sees fc1
            self.act1 = ActivationSite(activation(), weight=None)
            self.act2 = ActivationSite(activation(), weight=f"{prefix}.fc1.weight")
        else:
            self.act1 = ActivationSite(activation(), weight=f"{prefix}.fc1.weight")
            self.act2 = ActivationSite(activation(), weight=f"{prefix}.fc2.weight")
        self.residual = Site("residual")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            h = self.fc1(self.act1(self.norm1(x)))
            return self.residual(x + self.fc2(self.act2(self.norm2(h))))
        h = self.act1(self.norm1(self.fc1(x)))
        return self.residual(self.act2(x + self.norm2(self.fc2(h))))


class ResMLP(nn.Module):
    """Input projection, residual blocks, output Linear; (N, ...) inputs, (N, n_classes) logits."""

    def __init__(self, in_features: int, n_classes: int, width: int, depth: int, activation: ActFactory,
                 norm: str = "none", preact: bool = False):
        super().__init__()
        if depth < 3 or depth % 2 == 0:
            raise ValueError(f"ResMLP depth must be odd and >= 3, got {depth}")
        self.preact = preact
        self.proj = nn.Linear(in_features, width)
        if not preact:
            self.proj_norm = make_norm(norm, width)
            self.proj_act = ActivationSite(activation(), weight="proj.weight")
        self.blocks = nn.ModuleList(ResidualBlock(f"blocks.{i}", width, norm, activation, preact)
                                    for i in range((depth - 1) // 2))
        if preact:  # the projection's norm and activation move to the end, before the head
            self.final_norm = make_norm(norm, width)
            self.final_act = ActivationSite(activation())
        self.out = nn.Linear(width, n_classes)
        self.output = Site("output", weight="out.weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x.flatten(1))
        if not self.preact:
            x = self.proj_act(self.proj_norm(x))
        for block in self.blocks:
            x = block(x)
        if self.preact:
            x = self.final_act(self.final_norm(x))
        return self.output(self.out(x))
