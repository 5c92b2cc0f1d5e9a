"""Training and evaluation steps: whole-tensor data, seeded index batches, no host syncs per step.

Per-step quantities (loss, correct predictions, the gradient norm of each measured weight and of
all parameters together) are summed into device tensors; the caller reads them once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from initlab.config import OptimizerConfig

EVAL_CHUNK = 8192


def build_optimizer(params, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    if cfg.name in ("sgd", "momentum"):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                                   momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    optimizer = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.name]
    return optimizer(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class EpochSums:
    """Device-side sums over one epoch's steps."""

    loss: torch.Tensor
    correct: torch.Tensor
    grad_norms: torch.Tensor  # per measured weight, summed Frobenius norms of its gradient
    total_grad_norm: torch.Tensor  # summed norm of all parameters' gradients (one vector)
    steps: int
    samples: int


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batch_size: int, generator: torch.Generator, weights: Sequence[torch.Tensor] = (),
                augment: Optional[Augment] = None, track_grad_norms: bool = True) -> EpochSums:
    """One pass over (x, y) in a seeded random order; the last batch may be smaller.

    ``weights``: parameters whose gradient norms are summed one by one (layers.csv's
    grad_norm_train); ``augment(batch, generator)``, if given, transforms each training batch on
    the device. ``track_grad_norms=False`` skips every gradient norm (the benchmark's baseline).
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    device = x.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    grad_norms = torch.zeros(len(weights), device=device)
    total = torch.zeros((), device=device)
    order = torch.randperm(len(y), generator=generator, device=device)  # the generator lives on the device
    batches = order.split(batch_size)
    for idx in batches:
        xb, yb = x[idx], y[idx]
        if augment is not None:
            xb = augment(xb, generator)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            loss_sum += loss
            correct += (logits.argmax(dim=1) == yb).sum()
            if track_grad_norms:
                grads = [p.grad for p in params if p.grad is not None]
                total += torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                if weights:
                    grad_norms += torch.stack(torch._foreach_norm(
                        [w.grad if w.grad is not None else torch.zeros_like(w) for w in weights]))
    return EpochSums(loss_sum, correct, grad_norms, total, len(batches), len(y))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y), in chunks; one host sync at the end."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for xb, yb in zip(x.split(EVAL_CHUNK), y.split(EVAL_CHUNK)):
        logits = model(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
        correct += (logits.argmax(dim=1) == yb).sum()
    return (loss_sum / len(y)).item(), (correct.double() / len(y)).item()
