"""The train state: everything a job carries from epoch to epoch, with one save and one restore."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import logging

import torch
from torch import nn

from initlab.records import JobRecords

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Model, optimizer, learning-rate schedule (initlab.train.schedule), early stopping's
    tracker of the best epoch (None without a validation metric to track), batch-order
    generator, the last finished epoch, the records written so far (with the current attempt),
    the mean-field predictions at init and the init's report (LSUV's; None for other inits), the
    last two of the current attempt.

    ``state_dict()`` is the checkpoint's content (rows stay in the files: only their committed
    lengths travel); ``load_state_dict()`` puts a job back where ``state_dict()`` left it.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    records: JobRecords
    seed: int
    scheduler: Optional[Any] = None
    stopper: Optional[Any] = None
    epoch: int = 0
    mean_field: dict = field(default_factory=dict)
    init_report: Optional[dict] = None
    wall_start: float = field(default_factory=time.perf_counter)

    def wall_time(self) -> float:
        """Seconds this job has run, earlier sessions of a resumed job included."""
        return time.perf_counter() - self.wall_start

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "stopper": None if self.stopper is None else self.stopper.state_dict(),
                "generator": self.generator.get_state(), "device_type": self.generator.device.type,
                "records": self.records.state(), "mean_field": self.mean_field, "init_report": self.init_report,
                "wall_time": self.wall_time()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a checkpoint; the CSVs are cut back to the lengths it committed."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.stopper is not None and state.get("stopper") is not None:
            self.stopper.load_state_dict(state["stopper"])
        if state["device_type"] == self.generator.device.type:
            self.generator.set_state(state["generator"])
        else:  # a CUDA generator's state means nothing to the CPU's, and vice versa
            self.generator.manual_seed(self.seed + state["epoch"])
            log.warning("checkpoint written on %s, resumed on %s: batch order reseeded from seed + epoch",
                        state["device_type"], self.generator.device.type)
        self.records.restore(state["records"])
        self.mean_field = dict(state["mean_field"])
        self.init_report = state.get("init_report", self.init_report)  # older checkpoints: the run's seed's
        self.epoch = state["epoch"]
        self.wall_start = time.perf_counter() - state["wall_time"]
