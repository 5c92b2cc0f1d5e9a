"""The ``logger`` group: TensorBoard event files in ``<job>/tb/``, one TensorBoard run per job.

Tags are the same in every job, so ``tensorboard --logdir <sweep>`` overlays a sweep's jobs on
one chart per tag: ``train/loss``, ``test/acc``, ``val/loss``, ``train/lr``, ``train/grad_norm``
(epochs.csv), ``act_std/<site>``, ``grad_norm/<site>``, ``delta_rms/<site>`` (layers.csv), and
with ``histograms`` on: ``weight/<param>``, ``grad/<param>`` (of the job's loss on the probe
batch), ``preact/<site>``, ``act/<site>`` (finite entries only). The step is the epoch.

At the end, a separate ``*.hparams`` event file holds the hparams plugin's session (the run's
flattened choices) and the final metrics (``final/test_acc``, ...; those of result.json). No
job writes the plugin's experiment summary: TensorBoard then builds the hparams table from every
job's session, so a sweep over different models (different ``model.*`` keys) shows them all.

Restarts (``early_stopping.restarts``): each attempt after the first is a run of its own,
``<job>/tb/attempt=<k>/``, its steps its own epochs as in epochs.csv's rows of that attempt
(attempts logged into one run drew their epochs 0, 1, ... over each other).

Resuming: TensorBoard reads a run's event files in name order and drops, at a ``purge_step``
marker, every earlier point at or after that step; a resumed session opens its writer with
``purge_step`` = its first epoch in the run of its attempt, so points written after the
checkpoint by the killed session never show twice, and the purge reaches no other attempt.
This callback runs before ``Checkpoint`` and flushes each epoch, so no epoch a checkpoint holds
is missing from the files.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import torch
import torch.nn.functional as F

from initlab.config import ConfigError, ExperimentConfig
from initlab.measure.normalization import probe_mode
from initlab.measure.probes import content_rows
from initlab.models.sites import probing
from initlab.records import PROBE_COLUMNS
from initlab.resume import flatten
from initlab.train.callbacks import EpochEnd
from initlab.train.state import TrainState

if TYPE_CHECKING:  # tensorboard is imported only by a job that logs to it
    from torch.utils.tensorboard import SummaryWriter

TB_DIR = "tb"
HPARAMS_SUFFIX = ".hparams"
SCALARS = {"train_loss": "train/loss", "train_acc": "train/acc", "test_loss": "test/loss", "test_acc": "test/acc",
           "val_loss": "val/loss", "val_acc": "val/acc", "lr": "train/lr", "grad_norm": "train/grad_norm"}
SITE_SCALARS = ("act_std", "grad_norm", "delta_rms")  # layers.csv columns, one chart per site
HISTOGRAM_BINS = 64
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NoLogger:
    """``logger=none``: nothing is written."""

    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None:
        pass

    def close(self, state: TrainState, result: Mapping[str, Any]) -> None:
        pass


def build_logger(exp: ExperimentConfig, job_dir: Path, x_probe: torch.Tensor, y_probe: torch.Tensor,
                 fresh: bool, loss: Loss = F.cross_entropy) -> "NoLogger | TensorBoard":
    """The logger ``exp.logger`` asks for. ``fresh``: the job starts from scratch, so a previous
    run's ``tb/`` is removed whatever the logger (a folder never holds two runs' events).
    Raises ConfigError (one line) when tensorboard is not installed."""
    folder = Path(job_dir) / TB_DIR
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    if exp.logger.name == "none":
        return NoLogger()
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("logger=tensorboard needs the tensorboard package: pip install 'tensorboard>=2.14,<3' "
                          "(or logger=none)")
    return TensorBoard(folder, x_probe, y_probe, loss, histograms=exp.logger.histograms)


def _after_existing_files(folder: Path) -> None:
    """Wait until a new event file sorts after the folder's others. Their names begin with the
    creation time in whole seconds and TensorBoard reads them in name order (purges included),
    so a file made in the same second as another (a resume in the same process) could be read
    first."""
    stamps = [int(p.name.split(".")[3]) for p in folder.glob("events.out.tfevents.*")]
    while stamps and int(time.time()) <= max(stamps):
        time.sleep(0.05)


def _finite(t: torch.Tensor) -> torch.Tensor:
    v = t.detach().flatten()
    return v[torch.isfinite(v)]


def add_histogram(writer: "SummaryWriter", tag: str, t: torch.Tensor, step: int) -> None:
    """The finite entries of ``t`` as a TensorBoard histogram: HISTOGRAM_BINS equal bins over
    [min, max] (widened by 0.5 each way when all entries are equal), computed on t's device;
    nothing when no entry is finite."""
    v = _finite(t).double()
    if v.numel() == 0:
        return
    lo, hi, total, squares = torch.stack([v.min(), v.max(), v.sum(), v.pow(2).sum()]).tolist()
    left, right = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    counts = torch.histc(v, bins=HISTOGRAM_BINS, min=left, max=right).tolist()
    edges = torch.linspace(left, right, HISTOGRAM_BINS + 1, dtype=torch.float64)[1:].tolist()
    writer.add_histogram_raw(tag, min=lo, max=hi, num=v.numel(), sum=total, sum_squares=squares,
                             bucket_limits=edges, bucket_counts=counts, global_step=step)


def hparam_values(choices: Mapping[str, Any]) -> dict[str, Any]:
    """The run's choices as hparams: dotted keys; numbers and strings kept, booleans and lists as
    they read in the config (``true``, ``[8, 16]``); None left out (the plugin has no null)."""
    out = {}
    for key, value in flatten(choices).items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, list):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        out[key] = value
    return out


def final_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """``final/<key>`` for each loss and accuracy of result.json's ``final`` row."""
    return {f"final/{k}": float(v) for k, v in result["final"].items()
            if k.endswith(("_loss", "_acc")) and v is not None}


class TensorBoard:
    """Writes each epoch's scalars (and histograms) under ``folder``; ``close`` adds the hparams."""

    def __init__(self, folder: Path, x_probe: torch.Tensor, y_probe: torch.Tensor, loss: Loss, histograms: bool):
        self.folder, self.x_probe, self.y_probe, self.loss = Path(folder), x_probe, y_probe, loss
        self.histograms = histograms
        self.writer: Optional["SummaryWriter"] = None
        self.attempt = 0  # whose run the open writer writes
        for old in self.folder.glob(f"*{HPARAMS_SUFFIX}"):  # a finished run's: this session ends it anew
            old.unlink()

    def run_folder(self, attempt: int) -> Path:
        """The TensorBoard run of restart ``attempt``: the job's tb/ for the first, then tb/attempt=k/."""
        return self.folder if attempt == 0 else self.folder / f"attempt={attempt}"

    def _open(self, folder: Path, purge_step: Optional[int], suffix: str = "") -> "SummaryWriter":
        """A writer whose file sorts after the folder's others; ``purge_step`` (None: none) only
        where earlier files exist (there is nothing to purge in an empty folder)."""
        from torch.utils.tensorboard import SummaryWriter

        folder.mkdir(parents=True, exist_ok=True)
        earlier = any(folder.glob("events.out.tfevents.*"))
        _after_existing_files(folder)
        return SummaryWriter(str(folder), purge_step=purge_step if earlier else None, filename_suffix=suffix)

    def on_epoch_end(self, state: TrainState, end: EpochEnd) -> None:
        attempt = state.records.attempt
        if self.writer is not None and attempt != self.attempt:  # a restart: its own run
            self.writer.close()
            self.writer = None
        if self.writer is None:
            self.writer, self.attempt = self._open(self.run_folder(attempt), purge_step=end.epoch), attempt
        w, step = self.writer, end.epoch
        for key, tag in SCALARS.items():
            if end.row.get(key) is not None:
                w.add_scalar(tag, end.row[key], step)
        columns = [PROBE_COLUMNS.index(c) for c in SITE_SCALARS]
        for row, values, present in zip(end.stats.rows, end.stats.values.tolist(), end.stats.present.tolist()):
            for name, c in zip(SITE_SCALARS, columns):
                if present[c]:
                    w.add_scalar(f"{name}/{row.site}", values[c], step)
        if self.histograms:
            self._histograms(state.model, step)
        w.flush()

    def _histograms(self, model: torch.nn.Module, step: int) -> None:
        """One probing pass of the probe batch: weights, their gradients, every site's h and phi(h)."""
        params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        with torch.enable_grad(), probe_mode(model), probing(model, shifts=False) as probe:
            loss = self.loss(model(self.x_probe), self.y_probe)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (name, p), g in zip(params.items(), grads):
            add_histogram(self.writer, f"weight/{name}", p, step)
            if g is not None:
                add_histogram(self.writer, f"grad/{name}", g, step)
        content = content_rows(model, self.x_probe)  # a padded sequence's padding is not data
        for tap in probe.taps.values():
            add_histogram(self.writer, f"preact/{tap.site}", content(tap.pre), step)
            add_histogram(self.writer, f"act/{tap.site}", content(tap.post), step)

    def close(self, state: TrainState, result: Mapping[str, Any]) -> None:
        """Close the epochs' file, then write the hparams session and the final metrics (at the
        last epoch's step) in a file of their own in the job's tb/, which a later session replaces."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        from torch.utils.tensorboard.summary import hparams

        metrics = final_metrics(result)
        _, start, end = hparams(hparam_values(result["choices"]), metrics)
        writer = self._open(self.folder, purge_step=None, suffix=HPARAMS_SUFFIX)
        writer.file_writer.add_summary(start, state.epoch)
        writer.file_writer.add_summary(end, state.epoch)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, state.epoch)
        writer.close()
