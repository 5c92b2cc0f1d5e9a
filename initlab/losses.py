"""The training objective, shared by training, evaluation and the probe's backward pass.

``cross_entropy``: softmax cross-entropy of the logits. ``mse``: the squared error between the
logits (no output nonlinearity) and the one-hot targets, averaged over the batch and the classes,
i.e. ``mean_{n,c} (z_nc - [y_n == c])^2`` (torch.nn.functional.mse_loss on one-hot targets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def loss_fn(name: str, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The loss of logits (N, C) against class labels y (N,), long.

    ``reduction``: ``mean`` over the batch (a scalar) or ``sum`` over it (for chunked means);
    MSE is always a mean over the classes of each sample. Raises ValueError for another name.
    """
    if name == "cross_entropy":
        return F.cross_entropy(logits, y, reduction=reduction)
    if name == "mse":
        target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        per_sample = (logits - target).pow(2).mean(dim=1)
        return per_sample.mean() if reduction == "mean" else per_sample.sum()
    raise ValueError(f"loss {name!r}; valid: cross_entropy, mse")
