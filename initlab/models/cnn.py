"""A plain (or residual) conv stack: the CNN of the depth study, with a site at every activation.

``depth`` 3x3 conv layers (padding 1) are spread over ``len(channels)`` stages, the first
``depth % stages`` stages one layer longer (depth 5 over [16, 32, 64]: 2, 2, 1 layers). Each layer
is Conv -> norm -> act; ``residual`` makes it act(norm(conv(x)) + skip(x)), skip the identity or a
1x1 conv (no bias, not counted in ``depth``) where the channel count changes. A 2x2 max-pool sits
between stages, so inputs need 2^(stages - 1) pixels a side; then global average pooling and a
Linear head. ``branch_init`` sets how each residual layer's branch starts
(initlab.models.branches).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from initlab.models.branches import Branched
from initlab.models.sites import ActivationSite, Site


def stage_depths(depth: int, stages: int) -> list[int]:
    """Conv layers per stage: ``depth`` spread evenly, the first ``depth % stages`` stages longer."""
    if depth < stages:
        raise ValueError(f"CNN depth {depth} < {stages} stages: each stage needs a conv layer")
    return [depth // stages + (1 if i < depth % stages else 0) for i in range(stages)]


class ConvLayer(Branched):
    """3x3 Conv -> norm -> act (plus a skip when residual); one site at the activation, and a
    residual site at the output of a residual layer.

    A residual layer's branch is norm(conv(x)), one weight layer (m = 1 for Fixup); rezero moves
    the activation into it: skip(x) + alpha act(norm(conv(x))) (initlab.models.branches).
    """

    def __init__(self, prefix: str, c_in: int, c_out: int, batchnorm: bool, residual: bool,
                 activation: nn.Module, branch_init: str = "default"):
        super().__init__(branch_init)
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.BatchNorm2d(c_out) if batchnorm else nn.Identity()
        self.skip = None
        if residual:
            self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1, bias=False)
        self.act = ActivationSite(activation, weight=f"{prefix}.conv.weight")
        if residual:
            self.residual = Site("residual")

    def branch_layers(self) -> list[nn.Module]:
        return [self.conv]

    def branch_end(self) -> nn.Module:
        return self.conv if isinstance(self.norm, nn.Identity) else self.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(x))
        if self.skip is None:
            return self.act(h)
        if self.branch_init == "rezero":
            return self.residual(self.skip(x) + self.scaled(self.act(h)))
        return self.residual(self.act(self.scaled(h) + self.skip(x)))


class CNN(nn.Module):
    """(N, C, H, W) images -> (N, n_classes) logits."""

    def __init__(self, in_channels: int, n_classes: int, channels: Sequence[int], depth: int,
                 activation: Callable[[], nn.Module], batchnorm: bool = False, residual: bool = False,
                 branch_init: str = "default"):
        super().__init__()
        if branch_init != "default" and not residual:
            raise ValueError(f"branch_init={branch_init} needs residual layers (residual=True)")
        layers, c_in = [], in_channels
        for s, (c_out, n) in enumerate(zip(channels, stage_depths(depth, len(channels)))):
            stage = []
            for j in range(n):
                stage.append(ConvLayer(f"stages.{s}.{j}", c_in, c_out, batchnorm, residual, activation(),
                                       branch_init))
                c_in = c_out
            layers.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(layers)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(c_in, n_classes)
        self.output = Site("output", weight="head.weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for s, stage in enumerate(self.stages):
            if s > 0:
                x = self.pool(x)
            x = stage(x)
        return self.output(self.head(x.mean(dim=(2, 3))))
