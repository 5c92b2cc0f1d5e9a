"""Residual MLP with the plain MLP's weight layers, so depth studies compare like with like.

``depth`` counts hidden Linear layers as ``mlp`` does: a plain stem of 1 (odd depth) or 2 (even
depth) Linear layers, the first Linear(in, width), then (depth - 1) // 2 residual blocks of two
Linear(width, width) each, then the output Linear. With the same width and norm it has exactly
the plain MLP's parameters (one norm per hidden Linear too); depth >= 3 (one block at least).

Post-activation blocks (He et al. 2016, "Deep residual learning"):
x -> act(x + norm(fc2(act(norm(fc1(x)))))), after a stem of Linear -> norm -> act layers.
Pre-activation blocks (He et al. 2016, "Identity mappings", ``preact``):
x -> x + fc2(act(norm(fc1(act(norm(x)))))), the stem's last Linear bare, norm -> act before the
head. Images are flattened. ``branch_init`` sets how each block's branch starts
(initlab.models.branches).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from initlab.models.branches import Branched
from initlab.models.sites import ActivationSite, Site

ActFactory = Callable[[], nn.Module]


def make_norm(norm: str, width: int) -> nn.Module:
    """BatchNorm1d / LayerNorm over ``width`` features, or the identity for ``none``."""
    if norm == "batchnorm":
        return nn.BatchNorm1d(width)
    if norm == "layernorm":
        return nn.LayerNorm(width)
    return nn.Identity()


def layout(depth: int) -> tuple[int, int]:
    """(stem Linear layers, residual blocks) for ``depth`` hidden Linear layers (depth >= 3)."""
    if depth < 3:
        raise ValueError(f"ResMLP depth must be >= 3, got {depth}")
    stem = 1 if depth % 2 else 2
    return stem, (depth - stem) // 2


class ResidualBlock(Branched):
    """Two Linear(width, width) with a skip; sites at both activations and at the block's output.

    ``branch_init`` (initlab.models.branches) adds the branch multiplier (fixup, skipinit, rezero)
    and, for rezero, moves a post-activation block's second activation into the branch:
    x -> x + alpha act(norm(fc2(act(norm(fc1(x)))))).
    """

    def __init__(self, prefix: str, width: int, norm: str, activation: ActFactory, preact: bool,
                 branch_init: str = "default"):
        super().__init__(branch_init)
        self.preact = preact
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.norm1, self.norm2 = make_norm(norm, width), make_norm(norm, width)
        self.ends_in_norm = not preact and norm != "none"
        if preact:  # act1 sees the residual stream (a sum: the stem's and earlier blocks' fc2), act2 sees fc1
            self.act1 = ActivationSite(activation(), weight=None)
            self.act2 = ActivationSite(activation(), weight=f"{prefix}.fc1.weight")
        else:
            self.act1 = ActivationSite(activation(), weight=f"{prefix}.fc1.weight")
            self.act2 = ActivationSite(activation(), weight=f"{prefix}.fc2.weight")
        self.residual = Site("residual")

    def branch_layers(self) -> list[nn.Module]:
        return [self.fc1, self.fc2]

    def branch_end(self) -> nn.Module:
        return self.norm2 if self.ends_in_norm else self.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            h = self.fc1(self.act1(self.norm1(x)))
            return self.residual(x + self.scaled(self.fc2(self.act2(self.norm2(h)))))
        h = self.act1(self.norm1(self.fc1(x)))
        if self.branch_init == "rezero":
            return self.residual(x + self.scaled(self.act2(self.norm2(self.fc2(h)))))
        return self.residual(self.act2(x + self.scaled(self.norm2(self.fc2(h)))))


class ResMLP(nn.Module):
    """Stem, residual blocks, output Linear; (N, ...) inputs, (N, n_classes) logits."""

    def __init__(self, in_features: int, n_classes: int, width: int, depth: int, activation: ActFactory,
                 norm: str = "none", preact: bool = False, branch_init: str = "default"):
        super().__init__()
        n_stem, n_blocks = layout(depth)
        self.preact = preact
        self.stem = nn.ModuleList(nn.Linear(in_features if i == 0 else width, width) for i in range(n_stem))
        n_acts = n_stem - 1 if preact else n_stem  # pre-activation: the blocks start with norm -> act
        self.stem_norms = nn.ModuleList(make_norm(norm, width) for _ in range(n_acts))
        self.stem_acts = nn.ModuleList(ActivationSite(activation(), weight=f"stem.{i}.weight") for i in range(n_acts))
        self.blocks = nn.ModuleList(ResidualBlock(f"blocks.{i}", width, norm, activation, preact, branch_init)
                                    for i in range(n_blocks))
        if preact:
            self.final_norm = make_norm(norm, width)
            self.final_act = ActivationSite(activation())
        self.out = nn.Linear(width, n_classes)
        self.output = Site("output", weight="out.weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i, linear in enumerate(self.stem):
            x = linear(x)
            if i < len(self.stem_acts):
                x = self.stem_acts[i](self.stem_norms[i](x))
        for block in self.blocks:
            x = block(x)
        if self.preact:
            x = self.final_act(self.final_norm(x))
        return self.output(self.out(x))
