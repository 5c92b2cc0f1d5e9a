"""Training and evaluation steps: whole-tensor data, seeded index batches, no host syncs per step.

Per-step quantities (loss, correct predictions, the gradient norm of each measured weight and of
all parameters together) are summed into device tensors; the caller reads them once per epoch.
Steps due for steps.csv (``log_every``) stack their loss and per-weight norms into a device
buffer, also read once per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from initlab.config import OptimizerConfig
from initlab.losses import loss_fn

EVAL_CHUNK = 8192  # examples per evaluation chunk at most
# The widest activation of an evaluation chunk, at most: on a CPU 16 MiB keeps every block below
# glibc's largest mmap threshold (32 MiB; initlab.train.allocator), so a chunk's activations reuse
# freed memory instead of being page-faulted in afresh layer after layer; a GPU's caching allocator
# has no such cost, and larger chunks keep it busy (benchmarks/README.md, "Evaluation chunks").
EVAL_BYTES = {"cpu": 16 * 2**20, "cuda": 1 << 30}


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
class StepLog:
    """The logged steps of one epoch: ``steps`` (1-based over the run) and ``lrs`` (the first
    param group's lr in force during the step) on the host; ``values`` (len(steps), 1 + 3 W) on
    the device: the loss, then per measured weight its Frobenius norm, its gradient's norm and
    its bias gradient's norm (0 without a bias), all at the weights the step's gradient was taken
    at (before the update)."""

    steps: list[int]
    lrs: list[float]
    values: torch.Tensor


@dataclass
class EpochSums:
    """Device-side sums over one epoch's steps."""

    loss: torch.Tensor
    correct: torch.Tensor
    grad_norms: torch.Tensor  # per measured weight, summed Frobenius norms of its gradient
    total_grad_norm: torch.Tensor  # summed norm of all parameters' gradients (one vector)
    steps: int
    samples: int
    logged: Optional[StepLog] = None  # the steps due for steps.csv; None when off
    overflow: Optional[str] = None  # why a step overflowed float32 (the weights are NaN since), else None


def overflowed(err: RuntimeError) -> bool:
    """Whether ``err`` is torch refusing a scalar beyond float32 inside an optimizer's step ("value
    cannot be converted to type float without overflow": an lr or weight decay of 1e39, Adam's
    lr / (1 - beta1^t) past 3.4e38). Such a step is divergence, not a crash (``step_or_overflow``)."""
    return "without overflow" in str(err)


def step_or_overflow(optimizer: torch.optim.Optimizer) -> Optional[str]:
    """``optimizer.step()``; where torch refuses it (``overflowed``), the optimizer's parameters set
    to NaN (what the step left, some updated and some not, is no network; NaN weights make the
    losses NaN, which the divergence check records) and the reason returned, else None."""
    try:
        optimizer.step()
    except RuntimeError as err:
        if not overflowed(err):
            raise
        with torch.no_grad():
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.fill_(math.nan)
        return str(err).splitlines()[0]
    return None


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batch_size: int, generator: torch.Generator, weights: Sequence[torch.Tensor] = (),
                augment: Optional[Augment] = None, track_grad_norms: bool = True, loss: str = "cross_entropy",
                log_every: int = 0, first_step: int = 1,
                biases: Sequence[Optional[torch.Tensor]] = ()) -> EpochSums:
    """One pass over (x, y) in a seeded random order; the last batch may be smaller.

    ``weights``: parameters whose gradient norms are summed one by one (layers.csv's
    grad_norm_train); ``augment(batch, generator)``, if given, transforms each training batch on
    the device. ``track_grad_norms=False`` skips every gradient norm (the benchmark's baseline).
    ``loss``: an initlab.losses name. ``log_every`` > 0 logs every step whose number (counted
    from ``first_step``, this epoch's first) is a multiple of it into ``EpochSums.logged``, with
    ``biases`` (each weight's bias or None, same order as ``weights``).
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    position = {id(p): i for i, p in enumerate(params)}
    weight_rows = torch.tensor([position[id(w)] for w in weights], dtype=torch.long, device=x.device)
    device = x.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    grad_norms = torch.zeros(len(weights), device=device)
    total = torch.zeros((), device=device)
    order = torch.randperm(len(y), generator=generator, device=device)  # the generator lives on the device
    batches = order.split(batch_size)
    log_steps, log_lrs, log_rows = [], [], []
    overflow = None
    for i, idx in enumerate(batches):
        xb, yb = x[idx], y[idx]
        if augment is not None:
            xb = augment(xb, generator)
        logits = model(xb)
        value = loss_fn(loss, logits, yb)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        step = first_step + i
        if log_every and step % log_every == 0:
            log_steps.append(step)
            log_lrs.append(optimizer.param_groups[0]["lr"])
            log_rows.append(_step_row(value, weights, biases))
        overflow = overflow or step_or_overflow(optimizer)
        with torch.no_grad():
            loss_sum += value
            correct += (logits.argmax(dim=1) == yb).sum()
            if track_grad_norms:
                # one norm per parameter, once: the total and the measured weights' come from it
                norms = torch.stack(torch._foreach_norm(
                    [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]))
                total += torch.linalg.vector_norm(norms)
                if weights:
                    grad_norms += norms[weight_rows]
    logged = None
    if log_every:
        width = 1 + 3 * len(weights)
        values = torch.stack(log_rows) if log_rows else torch.zeros((0, width), device=device)
        logged = StepLog(log_steps, log_lrs, values)
    return EpochSums(loss_sum, correct, grad_norms, total, len(batches), len(y), logged, overflow)


@torch.no_grad()
def _step_row(value: torch.Tensor, weights: Sequence[torch.Tensor],
              biases: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
    """(1 + 3 W,) float32 on the device: loss, weight norms, gradient norms, bias gradient norms."""
    def norms(tensors):
        return torch.stack(torch._foreach_norm(tensors)).float() if tensors else value.new_zeros(0)
    zero = value.new_zeros((), dtype=torch.float32)
    bias_norms = [torch.linalg.vector_norm(b.grad).float() if b is not None and b.grad is not None else zero
                  for b in (biases or [None] * len(weights))]
    return torch.cat([value.detach().float().reshape(1), norms([w.detach() for w in weights]),
                      norms([w.grad if w.grad is not None else torch.zeros_like(w) for w in weights]),
                      torch.stack(bias_norms) if bias_norms else value.new_zeros(0)])


@torch.no_grad()
def widest_output(model: nn.Module, example: torch.Tensor) -> int:
    """Bytes of ``model``'s widest module output for one example: the largest tensor a forward
    pass makes beside the parameters, an attention layer's heads × T × T scores counted as one (no
    module outputs them). ``example``: one input (1, ...), on any device (the meta device gives
    sizes without computing); measured by one forward in eval mode with a hook on every module
    (the mode is restored)."""
    widest = [example.element_size()]

    def hook(module: nn.Module, inputs, output) -> None:
        for out in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(out, torch.Tensor):
                widest.append(out[0].numel() * out.element_size() if out.dim() else out.element_size())
        if isinstance(module, nn.MultiheadAttention) and len(inputs) >= 2:  # its heads x T x S scores
            query, key = inputs[0], inputs[1]
            seq = 1 if module.batch_first else 0
            if query.dim() == 3:
                widest.append(module.num_heads * query.shape[seq] * key.shape[seq] * query.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        model(example[:1])
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return max(widest)


def eval_rows(model: nn.Module, example: torch.Tensor, members: int = 1) -> int:
    """Examples per evaluation chunk (1 to EVAL_CHUNK) for ``members`` models like ``model`` run at
    once: as many as keep the widest module output of the chunk (``widest_output``), all members
    together, within EVAL_BYTES of ``example``'s device. ``example``: one input (1, ...).

    On a CPU, 8192 examples of a CNN's 16 × 32 × 32 feature maps are 512 MiB a layer and evaluate
    2.5× slower than 256 examples (16 MiB); a width-128 MLP keeps all 8192 (4 MiB)."""
    budget = EVAL_BYTES.get(example.device.type, EVAL_BYTES["cpu"])
    return max(1, min(EVAL_CHUNK, budget // (widest_output(model, example) * members)))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy") -> tuple[float, float]:
    """Mean loss (an initlab.losses name) and accuracy over (x, y), in chunks of ``eval_rows``
    examples; one host sync at the end."""
    rows = eval_rows(model, x[:1])
    model.eval()
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for xb, yb in zip(x.split(rows), y.split(rows)):
        logits = model(xb)
        loss_sum += loss_fn(loss, logits, yb, reduction="sum").double()
        correct += (logits.argmax(dim=1) == yb).sum()
    return (loss_sum / len(y)).item(), (correct.double() / len(y)).item()
