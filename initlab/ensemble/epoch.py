"""One training epoch and one evaluation pass of every active member at once.

The same steps as initlab.train.loop.train_epoch, per member: its own batch order from its own
generator (one shared gather when all orders agree), its mean loss, its gradient, its optimizer
step (for plain SGD one update per stacked tensor, ``stacked_sgd``); the sums (loss, correct,
gradient norms per measured weight and in total, the steps due for steps.csv) are (K,) device
tensors read once per epoch by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch.func import vmap

from initlab.ensemble.stack import Stacked
from initlab.losses import loss_fn
from initlab.train.loop import StepLog, eval_rows, step_or_overflow


@dataclass
class EnsembleSums:
    """Per active member (rows in ``Stacked.active`` order): summed loss (K,), correct (K,),
    gradient norms per measured weight (K, W) and of all parameters (K,); ``logged[j]`` the
    member's StepLog (None when steps.csv is off); ``overflows[j]`` why member j's optimizer step
    overflowed float32 (its weights then NaN: initlab.train.loop.step_or_overflow), else None."""

    loss: torch.Tensor
    correct: torch.Tensor
    grad_norms: torch.Tensor
    total_grad_norm: torch.Tensor
    steps: int
    samples: int
    logged: list[Optional[StepLog]]
    overflows: list[Optional[str]]


def _losses(name: str, logits: torch.Tensor, y: torch.Tensor, shared: bool, reduction: str) -> torch.Tensor:
    """(K,) the loss of each member's logits (K, B, C) against y ((B,) shared or (K, B))."""
    return vmap(lambda z, t: loss_fn(name, z, t, reduction=reduction), in_dims=(0, None if shared else 0))(logits, y)


def train_epoch(stacked: Stacked, optimizers: Sequence[torch.optim.Optimizer],
                generators: Sequence[torch.Generator], x: torch.Tensor, y: torch.Tensor, batch_size: int,
                weights: Sequence[str] = (), biases: Sequence[Optional[str]] = (), loss: str = "cross_entropy",
                log_every: int = 0, first_steps: Sequence[int] = (), track_grad_norms: bool = True) -> EnsembleSums:
    """One pass over (x, y) for every active member of ``stacked``.

    ``optimizers``, ``generators`` and ``first_steps`` (the member's first step number, for
    steps.csv) are per active member, in ``stacked.active`` order; ``weights`` / ``biases``:
    parameter names of the measured weights (layers.csv's grad_norm_train) and their biases
    (None without). Each member draws ``torch.randperm(len(y), generator)`` as the solo loop
    does, so member k's steps equal its solo run's to float tolerance.
    """
    stacked.train()
    device, k = x.device, len(stacked.active)
    first_steps = list(first_steps) or [1] * k
    orders = torch.stack([torch.randperm(len(y), generator=g, device=device) for g in generators])
    shared = bool((orders == orders[:1]).all())  # one host sync per epoch
    batches = (orders[0] if shared else orders).split(batch_size, dim=-1)
    loss_sum = torch.zeros(k, device=device)
    correct = torch.zeros(k, device=device, dtype=torch.long)
    grad_norms = torch.zeros(k, len(weights), device=device)
    total = torch.zeros(k, device=device)
    logs = [([], [], []) for _ in range(k)]
    overflows: list[Optional[str]] = [None] * k
    weight_rows = torch.tensor([stacked.names.index(w) for w in weights], dtype=torch.long, device=device)
    update = stacked_sgd(stacked, optimizers)
    for i, idx in enumerate(batches):
        xb, yb = x[idx], y[idx]
        if update is not None:
            stacked.release_grads()
        else:
            stacked.zero_grad()
        logits = stacked.forward(xb, shared)
        values = _losses(loss, logits, yb, shared, "mean")
        values.sum().backward()
        due = [j for j in range(k) if log_every and (first_steps[j] + i) % log_every == 0]
        if due:
            row = _step_rows(stacked, values, weights, biases)
            for j in due:
                logs[j][0].append(first_steps[j] + i)
                logs[j][1].append(optimizers[j].param_groups[0]["lr"])
                logs[j][2].append(row[j])
        if update is not None:
            update()
        else:
            for j, optimizer in enumerate(optimizers):  # a step beyond float32 diverges its member alone
                overflows[j] = overflows[j] or step_or_overflow(optimizer)
        with torch.no_grad():
            loss_sum += values.detach()
            correct += (logits.argmax(dim=-1) == yb).sum(dim=-1)
            if track_grad_norms:
                norms = torch.stack([_member_norms(stacked.params[name].grad, k, device) for name in stacked.names], dim=1)
                total += torch.linalg.vector_norm(norms, dim=1)
                if weights:
                    grad_norms += norms[:, weight_rows]
    if update is not None:
        stacked.adopt_grads()
    logged: list[Optional[StepLog]] = [None] * k
    if log_every:
        width = 1 + 3 * len(weights)
        logged = [StepLog(s, lr, torch.stack(rows) if rows else torch.zeros((0, width), device=device))
                  for s, lr, rows in logs]
    return EnsembleSums(loss_sum, correct, grad_norms, total, len(batches), len(y), logged, overflows)


def stacked_sgd(stacked: Stacked, optimizers: Sequence[torch.optim.Optimizer]) -> Optional[Callable[[], None]]:
    """torch.optim.SGD's step without momentum for all members at once, or None unless every
    member's optimizer is such an SGD (then each steps its own members' views).

    Per stacked tensor p (K, ...): p -= lr_k (grad + weight_decay_k p), torch.optim.SGD's update
    with momentum 0 (which keeps no state, so the members' optimizers stay valid for checkpoints),
    with each member's lr and weight decay as read now: the schedule changes them between
    epochs only (initlab.train.schedule).
    """
    groups = [o.param_groups for o in optimizers]
    if not optimizers or any(type(o) is not torch.optim.SGD or len(g) != 1 for o, g in zip(optimizers, groups)):
        return None
    settings = [g[0] for g in groups]
    if any(s["momentum"] != 0 or s["maximize"] or len(s["params"]) != len(stacked.names) for s in settings):
        return None
    params = [stacked.params[name] for name in stacked.names]
    device, k = params[0].device, len(optimizers)
    neg_lr = torch.tensor([-float(s["lr"]) for s in settings], device=device)
    decay = torch.tensor([float(s["weight_decay"]) for s in settings], device=device)
    neg_lrs = [neg_lr.view(k, *[1] * (p.dim() - 1)) for p in params]
    decays = [decay.view(k, *[1] * (p.dim() - 1)) for p in params] if bool((decay != 0).any()) else None

    @torch.no_grad()
    def update() -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        if decays is not None:
            grads = torch._foreach_addcmul(grads, params, decays)
        torch._foreach_addcmul_(params, grads, neg_lrs)
    return update


def _member_norms(tensor: Optional[torch.Tensor], k: int, device: torch.device) -> torch.Tensor:
    """(K,) the Frobenius norm of each member's slice (0 for a missing gradient)."""
    if tensor is None:
        return torch.zeros(k, device=device)
    return torch.linalg.vector_norm(tensor.reshape(k, -1), dim=1)


@torch.no_grad()
def _step_rows(stacked: Stacked, values: torch.Tensor, weights: Sequence[str],
               biases: Sequence[Optional[str]]) -> torch.Tensor:
    """(K, 1 + 3 W) float32: per member the loss, weight norms, gradient norms, bias gradient
    norms, at the weights the step's gradient was taken at (initlab.train.loop's StepLog)."""
    k = len(stacked.active)
    zero = torch.zeros(k, device=values.device)
    columns = [values.detach().float()]
    columns += [_member_norms(stacked.params[w].detach(), k, values.device) for w in weights]
    columns += [_member_norms(stacked.params[w].grad, k, values.device) for w in weights]
    columns += [_member_norms(stacked.params[b].grad, k, values.device) if b is not None else zero
                for b in (biases or [None] * len(weights))]
    return torch.stack(columns, dim=1).float()


@torch.no_grad()
def evaluate(stacked: Stacked, x: torch.Tensor, y: torch.Tensor,
             loss: str = "cross_entropy") -> list[tuple[float, float]]:
    """Per active member: mean loss and accuracy over (x, y), as initlab.train.loop.evaluate;
    all members in one stacked forward per chunk, one host sync at the end. A chunk holds what
    ``eval_rows`` allows K members: for K = 8 width-128 MLPs 4096 examples, where 8192 made each
    (8, 128, 8192) float32 block 32 MiB, past glibc's largest mmap threshold, page-faulted in
    afresh layer after layer (1.6 million minor faults, 2 s of a 25 s depth-50 group epoch)."""
    stacked.train(False)
    k = len(stacked.active)
    loss_sum = torch.zeros(k, device=x.device, dtype=torch.float64)
    correct = torch.zeros(k, device=x.device, dtype=torch.long)
    chunk = eval_rows(stacked.base, x[:1], members=k)
    for xb, yb in zip(x.split(chunk), y.split(chunk)):
        logits = stacked.forward(xb, shared=True)
        loss_sum += _losses(loss, logits, yb, True, "sum").double()
        correct += (logits.argmax(dim=-1) == yb).sum(dim=-1)
    means = torch.stack([loss_sum / len(y), correct.double() / len(y)], dim=1).tolist()
    return [(a, b) for a, b in means]
