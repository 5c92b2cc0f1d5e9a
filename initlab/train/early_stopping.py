"""Early stopping on a validation metric, with the best epoch's weights kept as a real copy.

The best weights are cloned tensors (``copy.deepcopy`` of the state_dict), never references to
the live parameters: ``model.state_dict()`` alone returns views that keep changing as training
goes on, so a "restore" from it gives back the last weights (the depth study's mistake).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Optional

from torch import nn

from initlab.config import EarlyStoppingConfig


class EarlyStopping:
    """Tracks the best epoch by ``cfg.monitor`` (lower val_loss, higher val_acc).

    An epoch improves when it beats the best by more than ``min_delta``; after ``patience``
    epochs without one, ``update`` returns True (stop). With ``cfg.enabled`` false it only tracks
    the best (for checkpoint=best) and never stops. ``best_weights`` is the best epoch's
    state_dict, deep-copied; ``best_row`` its epochs.csv row.
    """

    def __init__(self, cfg: EarlyStoppingConfig):
        self.cfg = cfg
        self.sign = 1.0 if cfg.monitor.value.endswith("loss") else -1.0  # minimize sign * value
        self.reset()

    def reset(self) -> None:
        """A new attempt: nothing seen yet."""
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.best_row: Optional[dict] = None
        self.best_weights: Optional[dict] = None
        self.bad_epochs = 0
        self.stopped_epoch: Optional[int] = None

    def update(self, epoch: int, row: Mapping[str, Any], model: nn.Module) -> bool:
        """After ``epoch`` (0 = the init): whether it improved (its weights are then copied)."""
        value = row[self.cfg.monitor.value]
        if not math.isfinite(value):
            self.bad_epochs += 1
            return False
        improved = self.best is None or self.sign * (self.best - value) > self.cfg.min_delta
        if improved:
            self.best, self.best_epoch, self.best_row = value, epoch, dict(row)
            self.best_weights = copy.deepcopy(model.state_dict())
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return improved

    def should_stop(self) -> bool:
        return self.cfg.enabled and self.bad_epochs >= self.cfg.patience

    def failed(self) -> bool:
        """Whether the attempt's best is worse than ``restart_below`` (val_acc below it, val_loss above)."""
        threshold = self.cfg.restart_below
        if threshold is None:
            return False
        return self.best is None or self.sign * (self.best - threshold) > 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_row": self.best_row,
                "best_weights": self.best_weights, "bad_epochs": self.bad_epochs,
                "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
