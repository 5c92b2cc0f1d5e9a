"""Batched image augmentation on the device: random crop with zero padding, then horizontal flip.

The CIFAR-10 recipe (pad 4, crop back to H x W, flip with probability 1/2) as two gathers on the
whole batch, so a training step stays a few tensor ops with no per-sample Python work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PADDING = 4


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = PADDING) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W), zero-padded by ``padding`` on every side, cropped back to
    H x W at a random offset and mirrored left-right with probability 1/2.

    Draws, in this order, from ``generator`` (on its own device): ``torch.randint(0, 2 * padding + 1,
    (N, 2))`` the (row, column) offsets into the padded image, then ``torch.rand(N) < 0.5`` the flips.
    Returns a new (N, C, H, W) tensor on ``x``'s device and dtype; ``x`` is not modified.
    """
    n, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=generator.device)
    flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
    offsets, flips = offsets.to(x.device), flips.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (N, H) rows of the padded image
    ahead = torch.arange(w, device=x.device)
    cols = offsets[:, 1:] + torch.where(flips[:, None], w - 1 - ahead, ahead)  # (N, W), reversed when flipped
    picked = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    return picked.gather(3, cols[:, None, None, :].expand(n, c, h, w))
