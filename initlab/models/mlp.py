"""The MLP under study, with a forward pass that can also return every layer's pre-activation."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``depth`` hidden blocks Linear(width) -> activation, then an output Linear to the classes.

    Layers are numbered 1..depth for the hidden blocks and depth+1 for the output layer, the
    numbering used in layers.csv.
    """

    def __init__(self, in_features: int, n_classes: int, width: int, depth: int, activation: nn.Module):
        super().__init__()
        sizes = [in_features] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(width, n_classes)
        self.act = activation

    @property
    def linears(self) -> list[nn.Linear]:
        return [*self.hidden, self.out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.out(x)

    def forward_layers(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Pre- and post-activations of every layer (for the output layer both are the logits)."""
        pre, post = [], []
        for layer in self.hidden:
            h = layer(x)
            x = self.act(h)
            pre.append(h)
            post.append(x)
        logits = self.out(x)
        return pre + [logits], post + [logits]
