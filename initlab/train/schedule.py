"""The learning-rate schedule: a torch.optim.lr_scheduler stepped once per epoch, after an
optional linear warmup.

Warmup sets the lr of epoch e (1..W) to ``optimizer.lr * e / W``; from epoch W + 1 the chosen
scheduler runs from ``optimizer.lr`` as if training began there (cosine's ``T_max`` defaults to
the epochs after warmup). The lr of an epoch is set before its steps, so epochs.csv's ``lr`` is
the lr those steps used (epoch 0, the init, shows ``optimizer.lr``).
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Optional

import torch
from torch.optim import lr_scheduler

from initlab.config import ExperimentConfig


def _build(optimizer: torch.optim.Optimizer, exp: ExperimentConfig) -> Optional[Any]:
    cfg = exp.scheduler
    if cfg.name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.name == "cosine":
        t_max = cfg.T_max if cfg.T_max is not None else max(1, exp.epochs - cfg.warmup_epochs)
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=cfg.eta_min)
    if cfg.name == "reduce_on_plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode=cfg.mode, factor=cfg.factor,
                                              patience=cfg.patience, min_lr=cfg.min_lr)
    return None


class Schedule:
    """Warmup then ``exp.scheduler``; ``step(epoch, row)`` after each epoch sets the next one's lr.

    ``row`` is the finished epoch's epochs.csv row (ReduceLROnPlateau reads its ``monitor``).
    ``state_dict``/``load_state_dict`` carry it through a checkpoint (the lr itself is in the
    optimizer's state).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, exp: ExperimentConfig):
        self.optimizer, self.warmup = optimizer, exp.scheduler.warmup_epochs
        self.monitor = getattr(exp.scheduler, "monitor", None)
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.scheduler = _build(optimizer, exp)

    def _set(self, factor: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def step(self, epoch: int, row: Mapping[str, Any]) -> None:
        """After ``epoch`` (0 = the init): set the lr of epoch ``epoch + 1``."""
        if epoch < self.warmup:
            self._set((epoch + 1) / self.warmup)
        elif epoch == self.warmup:
            self._set(1.0)  # the scheduler starts from optimizer.lr, its own epoch 0
        elif isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(row[self.monitor.value])
        elif self.scheduler is not None:
            with warnings.catch_warnings():  # an ensemble's plain-SGD update (initlab.ensemble.epoch.stacked_sgd)
                # moves the weights without optimizer.step(), which torch reads as the scheduler stepped first
                warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
                self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": None if self.scheduler is None else self.scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
