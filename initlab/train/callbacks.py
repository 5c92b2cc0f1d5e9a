"""What runs at the end of every epoch (epoch 0, the init, included), in order.

The loop builds an ``EpochEnd`` (the epochs.csv row and the probe statistics) and hands it to
each callback in turn: ``Divergence`` decides whether the epoch diverged, ``MeanField`` predicts
at init, ``Records`` writes the rows (and the Jacobians of a finite epoch), ``LearningRate`` sets
the next epoch's lr, ``Stopping`` tracks the best epoch and asks to stop, ``Checkpoint`` saves
the state of a finite epoch. A new feature that acts between epochs (a scheduler step, early
stopping, a logger) is one more class with ``on_epoch_end``; ``run`` does not change.
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol

import torch

from initlab import records
from initlab.config import ExperimentConfig
from initlab.measure.distributions import distribution_rows
from initlab.measure.jacobian import singular_values, summarize
from initlab.measure.probes import ProbeStatistics
from initlab.train import predictions
from initlab.train.loop import StepLog
from initlab.train.state import TrainState

log = logging.getLogger(__name__)
DELTA_RMS = records.PROBE_COLUMNS.index("delta_rms")
BIAS_GRAD_NORM = records.PROBE_COLUMNS.index("bias_grad_norm")


@dataclass
class EpochEnd:
    """One epoch's measurements: ``row`` (epochs.csv), ``stats`` (the probe pass),
    ``grad_norm_train`` (per measured weight, the epoch's mean; None at epoch 0), the steps
    logged for steps.csv (None when off, and at epoch 0) and, once ``Divergence`` has run, why
    the epoch diverged (None for a finite epoch); ``stop``: early stopping ends the attempt after
    this epoch."""

    epoch: int
    row: dict
    stats: ProbeStatistics
    grad_norm_train: Optional[list[float]]
    diverged: Optional[str] = None
    logged: Optional[StepLog] = None
    stop: bool = False


class EpochCallback(Protocol):
    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None: ...


def divergence(row: Mapping[str, Any], stats: ProbeStatistics) -> Optional[str]:
    """Why an epoch counts as diverged, or None: a non-finite loss (train, test or validation),
    or a non-finite probe statistic where it applies (overflowed weights, signals or gradients)."""
    losses = [f"{key} {row[key]}" for key in ("train_loss", "test_loss", "val_loss")
              if key in row and not math.isfinite(row[key])]
    if losses:
        return ", ".join(losses)
    bad = ~torch.isfinite(stats.values) & stats.present
    if bad.any():
        columns = [c for c, b in zip(records.PROBE_COLUMNS, bad.any(dim=0).tolist()) if b]
        where = [r.site for r, b in zip(stats.rows, bad.any(dim=1).tolist()) if b]
        return f"non-finite probe {', '.join(columns)} at {', '.join(where)}"
    return None


class Divergence:
    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None:
        end.diverged = divergence(end.row, end.stats)


class MeanField:
    """At epoch 0: the mean-field predictions for this model (empty where no theory exists)."""

    def __init__(self, exp: ExperimentConfig, x_probe: torch.Tensor):
        self.exp, self.x_probe = exp, x_probe

    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None:
        if end.epoch != 0:
            return
        output = [i for i, r in enumerate(end.stats.rows) if r.kind == "output"]
        delta_out = float(end.stats.values[output[-1], DELTA_RMS]) if output else math.nan
        state.mean_field = predictions.mean_field(self.exp, state.model, self.x_probe, delta_out)


def layer_rows(epoch: int, stats: ProbeStatistics, grad_norm_train: Optional[list[float]],
               predicted: Optional[dict] = None) -> list[dict]:
    """layers.csv rows: one per row of ``stats``; non-applicable columns empty."""
    train = dict(zip(stats.weights, grad_norm_train)) if grad_norm_train is not None else {}
    rows = []
    for meta, values, present in zip(stats.rows, stats.values.tolist(), stats.present.tolist()):
        row = {"epoch": epoch, "layer": meta.layer}
        row.update({c: (v if p else None) for c, v, p in zip(records.PROBE_COLUMNS, values, present)})
        row["grad_norm_train"] = train.get(meta.weight)
        for column in records.PREDICTED_COLUMNS:
            per_layer = predicted[column] if predicted else []  # 1..depth+1 for the MLP; [] outside the theory
            row[column] = per_layer[meta.layer - 1] if meta.layer is not None and meta.layer <= len(per_layer) else None
        row.update(site=meta.site, kind=meta.kind, index=meta.index)
        rows.append(row)
    return rows


class Records:
    """Append the epoch's rows: epochs.csv, layers.csv and, on a finite epoch due for one
    (epoch 0, every ``jacobian_every``), the Jacobian spectra on the probe inputs ``x_jacobian``
    (BatchNorm normalizing with the statistics of the probe batch ``x_probe``)."""

    def __init__(self, exp: ExperimentConfig, x_jacobian: torch.Tensor, x_probe: torch.Tensor):
        self.exp, self.x_jacobian, self.x_probe = exp, x_jacobian, x_probe

    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None:
        predicted = state.mean_field if end.epoch == 0 and not end.diverged else None
        layers = layer_rows(end.epoch, end.stats, end.grad_norm_train, predicted)
        jacobian, sv_rows = [], []
        every = self.exp.jacobian_every
        if not end.diverged and (end.epoch == 0 or (every and end.epoch % every == 0)):
            for kind, sv in singular_values(state.model, self.x_jacobian, self.x_probe).items():
                pred = predicted["jacobian_mean_sq_sv_pred"] if predicted and kind == "hidden" else None
                jacobian.append({"epoch": end.epoch, "kind": kind, **summarize(sv), "mean_sq_sv_pred": pred})
                sv_rows.extend({"epoch": end.epoch, "kind": kind, "sv": v} for v in sv.flatten().tolist())
        state.records.append(end.row, layers, jacobian, sv_rows)
        _log_epoch(end.row, self.exp.epochs)


class StepRecords:
    """steps.csv: the epoch's logged steps (initlab.train.loop.StepLog), one row per step and
    measured weight, on the site row that carries the weight in layers.csv; ``bias_grad_norm``
    empty where that row's is (a layer without bias)."""

    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None:
        if end.logged is None:
            return
        with_bias = end.stats.present[:, BIAS_GRAD_NORM].tolist()
        where = [(r.site, r.layer, b) for r, b in zip(end.stats.rows, with_bias) if r.weight is not None]  # StepLog's order
        n = len(where)
        rows = []
        for step, lr, values in zip(end.logged.steps, end.logged.lrs, end.logged.values.tolist()):
            for j, (site, layer, has_bias) in enumerate(where):
                rows.append({"step": step, "epoch": end.epoch, "loss": values[0], "lr": lr, "site": site,
                             "layer": layer, "weight_norm": values[1 + j], "grad_norm": values[1 + n + j],
                             "bias_grad_norm": values[1 + 2 * n + j] if has_bias else None})
        state.records.append_rows(records.STEPS_CSV, rows)


class Distributions:
    """distributions.csv at epoch 0 and every ``every`` epochs (0: never): quantiles and
    histograms per site on the probe inputs (initlab.measure.distributions)."""

    def __init__(self, every: int, x_probe: torch.Tensor):
        self.every, self.x_probe = every, x_probe

    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None:
        if not self.every or end.epoch % self.every:
            return
        state.records.append_rows(records.DISTRIBUTIONS_CSV, distribution_rows(state.model, self.x_probe, end.epoch))
class LearningRate:
    """After a finite epoch: the schedule (initlab.train.schedule) sets the next epoch's lr."""

    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None:
        if not end.diverged and state.scheduler is not None:
            state.scheduler.step(end.epoch, end.row)


class Stopping:
    """After a finite epoch: the best-epoch tracker (initlab.train.early_stopping) sees the row
    and, when early stopping is on and patience has run out before the run's last epoch
    (``epochs``), marks the epoch as the last: patience running out at ``epochs`` is no stop."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None:
        if end.diverged or state.stopper is None:
            return
        state.stopper.update(end.epoch, end.row, state.model)
        if end.epoch < self.epochs and state.stopper.should_stop():
            state.stopper.stopped_epoch, end.stop = end.epoch, True
            log.info("early stopping after epoch %d: best %s %.6g at epoch %d", end.epoch,
                     state.stopper.cfg.monitor.value, state.stopper.best, state.stopper.best_epoch)


class Checkpoint:
    """After a finite trained epoch (epoch 0 too when it is the only one): the train state and the
    run's choices, written atomically, when ``every_s`` seconds (wall clock) have passed since the
    job's previous checkpoint (0: after every epoch), and always after the epoch an attempt ends
    with (its ``epochs``-th, or early stopping's): a kill -9 loses at most ``every_s`` seconds, a
    kept checkpoint.pt is the last state. Checkpoints cost as much as a short epoch (pickling,
    fsync): sub-second epochs gain from spacing them."""

    def __init__(self, path: Path, choices: dict, epochs: int, every_s: float = 0.0):
        self.path, self.choices, self.epochs, self.every_s = Path(path), choices, epochs, every_s
        self.saved_at = time.perf_counter()

    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None:
        if end.diverged or (end.epoch == 0 and self.epochs > 0):  # epochs=0: the init is the last state
            return
        now = time.perf_counter()
        if now - self.saved_at < self.every_s and not end.stop and end.epoch < self.epochs:
            return
        self.saved_at = now
        buf = io.BytesIO()
        torch.save({**state.state_dict(), "choices": self.choices}, buf)
        records.write_bytes_atomic(self.path, buf.getvalue())


def _log_epoch(row: dict, epochs: int) -> None:
    log.info("epoch %d/%d  train_loss %.4f  train_acc %.4f  test_loss %.4f  test_acc %.4f  %.2fs",
             row["epoch"], epochs, row["train_loss"], row["train_acc"], row["test_loss"],
             row["test_acc"], row["epoch_time"])
