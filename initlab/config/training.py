"""How a run trains: the optimizer, logger and scheduler groups' schemas, and early stopping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from omegaconf import MISSING

from initlab.config.enums import Monitor, PlateauMonitor
from initlab.config.ranges import Checked, _require, number, numbers


# --- optimizer --------------------------------------------------------------------------------
@dataclass
class OptimizerConfig(Checked):
    PREFIX: ClassVar[str] = "optimizer."
    name: str = MISSING
    lr: float = number(gt=0)
    weight_decay: float = number(0.0, ge=0)


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = number(0.0, ge=0, lt=1)
    nesterov: bool = False

    def check(self) -> None:
        _require(not self.nesterov or self.momentum > 0, "optimizer.nesterov=true needs optimizer.momentum > 0")


@dataclass
class RMSpropConfig(OptimizerConfig):
    alpha: float = number(ge=0, lt=1)
    eps: float = number(gt=0)
    momentum: float = number(0.0, ge=0, lt=1)


@dataclass
class AdamConfig(OptimizerConfig):
    betas: list[float] = numbers(length=2, ge=0, lt=1)
    eps: float = number(gt=0)


# --- logger -----------------------------------------------------------------------------------
@dataclass
class LoggerConfig(Checked):
    """``none``: no logger; the records are the CSVs and result.json (initlab.train.tensorboard)."""

    PREFIX: ClassVar[str] = "logger."
    name: str = MISSING


@dataclass
class TensorBoardConfig(LoggerConfig):
    """TensorBoard event files in ``<job>/tb/``; ``histograms``: weights, gradients and every site's
    pre-activations and activations on the probe batch each epoch (one more probe pass)."""

    histograms: bool = True


# --- scheduler --------------------------------------------------------------------------------
@dataclass
class SchedulerConfig(Checked):
    """An epoch-wise learning-rate schedule (initlab.train.schedule). ``warmup_epochs`` > 0 first
    raises the lr linearly, ``optimizer.lr * e / warmup_epochs`` in epoch e, then hands over."""

    PREFIX: ClassVar[str] = "scheduler."
    name: str = MISSING
    warmup_epochs: int = number(0, ge=0, integer=True)

    def check(self) -> None:
        # W = 1 gives epoch 1 optimizer.lr * 1/1: under a constant lr, a warmup of one epoch is none at all
        # (under a schedule it holds optimizer.lr one epoch before the schedule starts, which changes the run)
        _require(self.warmup_epochs != 1 or self.name != "none",
                 "scheduler.warmup_epochs=1 changes nothing with scheduler=none (its one warmup epoch's lr, "
                 "optimizer.lr * 1/1, is the constant lr itself); valid: 0, or >= 2")


@dataclass
class StepSchedulerConfig(SchedulerConfig):
    """torch.optim.lr_scheduler.StepLR: lr times ``gamma`` every ``step_size`` epochs."""

    step_size: int = number(gt=0, integer=True)
    gamma: float = number(gt=0, lt=1)  # 1 would keep the lr: scheduler=none


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    """torch.optim.lr_scheduler.CosineAnnealingLR; ``T_max`` null = the epochs after warmup."""

    T_max: Optional[int] = number(None, gt=0, integer=True, optional=True)
    eta_min: float = number(0.0, ge=0)


@dataclass
class PlateauSchedulerConfig(SchedulerConfig):
    """torch.optim.lr_scheduler.ReduceLROnPlateau on ``monitor``, in the direction the monitor
    improves (``mode``); its other arguments torch's defaults."""

    monitor: PlateauMonitor = MISSING
    factor: float = number(gt=0, lt=1)
    patience: int = number(ge=0, integer=True)
    min_lr: float = number(0.0, ge=0)

    @property
    def mode(self) -> str:
        """ReduceLROnPlateau's mode follows the monitor: max for an accuracy, min for a loss. The
        other way round would cut the lr while the monitor improves."""
        return "max" if self.monitor.value.endswith("_acc") else "min"


# --- early stopping ---------------------------------------------------------------------------
@dataclass
class EarlyStoppingConfig(Checked):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs,
    then restore the best epoch's weights; ``restarts`` > 0 trains again from a fresh init (a seed
    derived from ``seed``) while the best value is worse than ``restart_below`` (for val_acc:
    below it; for val_loss: above it)."""

    PREFIX: ClassVar[str] = "early_stopping."
    enabled: bool = False
    monitor: Monitor = Monitor.val_loss
    patience: int = number(5, ge=1, integer=True)
    min_delta: float = number(0.0, ge=0)
    restarts: int = number(0, ge=0, integer=True)
    restart_below: Optional[float] = number(None, optional=True)

    def check(self) -> None:
        _require(self.restarts == 0 or self.restart_below is not None,
                 f"early_stopping.restarts={self.restarts} needs early_stopping.restart_below (the value of "
                 f"{self.monitor.value} an attempt must reach), got null")
        _require(self.restarts == 0 or self.enabled,
                 "early_stopping.restarts > 0 needs early_stopping.enabled=true")
        _require(self.restart_below is None or self.restarts > 0,
                 f"early_stopping.restart_below={self.restart_below} changes nothing with "
                 f"early_stopping.restarts=0; set restarts > 0 or restart_below=null")
        self._check_thresholds()

    def _check_thresholds(self) -> None:
        """The thresholds are values of ``monitor``: an accuracy lies in [0, 1] and a loss is >= 0, so
        a threshold past those bounds looks like a setting and acts as another one. restart_below=2
        (or a loss's -1) failed every attempt, an accuracy's -1 restarted only a diverged one (as 0
        does)."""
        monitor = f"early_stopping.monitor={self.monitor.value}"
        below = self.restart_below
        if self.monitor.value.endswith("_acc"):
            _require(below is None or below <= 1,
                     f"early_stopping.restart_below={below} with {monitor}: every attempt would fail (an accuracy "
                     "is at most 1); valid: a number in [0, 1] (0: only a diverged attempt restarts)")
            _require(below is None or below >= 0,
                     f"early_stopping.restart_below={below} with {monitor}: only a diverged attempt would restart "
                     "(an accuracy is at least 0), as with 0; valid: a number in [0, 1]")
        else:
            _require(below is None or below > 0,
                     f"early_stopping.restart_below={below} with {monitor}: every attempt would fail (a loss is "
                     "at least 0); valid: a number > 0")
