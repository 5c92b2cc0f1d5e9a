"""One job from config to records: data, model, init, epochs of training, statistics, result.

Read top to bottom: ``run`` is the whole job. Epoch 0 is the state at initialization; at the end
of every epoch the callbacks (initlab.train.callbacks) check divergence, predict at init, append
the rows and save a checkpoint, so a killed job continues where it stopped and a finished one
(``result.json`` present) is skipped, both only when asked for with the same settings
(initlab.resume). A diverged epoch ends the run, at init too. Early stopping ends an attempt
and restores its best weights at the end; ``early_stopping.restarts`` starts failed (or
diverged) attempts again from a fresh init, every attempt's rows kept with its ``attempt``.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from initlab import __version__, kernel_shaping, records
from initlab.config import ConfigError, Device, KeptCheckpoint, to_experiment
from initlab.config.enums import NO_GPU
from initlab.data import Data, load_data, size_params
from initlab.inits import initialize
from initlab.measure.jacobian import probe_count
from initlab.measure.normalization import check_batches
from initlab.measure.probes import measured_weights, probe_statistics
from initlab.losses import loss_fn
from initlab.memory import refused_if_too_large
from initlab.models import build_model, sizes
from initlab.models.summary import describe
from initlab.resume import check_same_run, choices_of, ended_early, mark_skipped, read_finished
from initlab.train.callbacks import (Checkpoint, Distributions, Divergence, EpochCallback, EpochEnd, LearningRate,
                                     MeanField, Records, StepRecords, Stopping)
from initlab.train.allocator import keep_freed_memory
from initlab.train.early_stopping import EarlyStopping
from initlab.train.loop import build_optimizer, evaluate, train_epoch
from initlab.train.predictions import theory_reason
from initlab.train.schedule import Schedule
from initlab.train.state import TrainState
from initlab.train.tensorboard import build_logger

log = logging.getLogger(__name__)
UNKEPT = (KeptCheckpoint.none.value, KeptCheckpoint.best.value)  # checkpoint.pt is removed once the job ends


def unreadable_checkpoint(job_dir: Path, err: Exception) -> str:
    """The one-line failure of a job whose checkpoint torch cannot load (a damaged file: found by
    the job, not the sweep's pre-check, which would load every checkpoint of a grid)."""
    return (f"{records.CHECKPOINT} in {job_dir} cannot be read ({type(err).__name__}: {err}); delete it to start "
            f"this job afresh (resume=false would restart every job of a sweep)")


def resolve_device(choice: Device) -> torch.device:
    if choice == Device.cuda and not torch.cuda.is_available():
        raise ConfigError(NO_GPU)
    if choice == Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice.value)


def default_threads(launcher: Optional[Mapping[str, Any]] = None) -> int:
    """This job's share of the cores, so parallel jobs never oversubscribe the CPU.

    Under joblib: cores / n_jobs; under submitit: its ``cpus_per_task``; else every core this
    process may run on (which SLURM's task/affinity already limits to the allocation).
    """
    cores = len(os.sched_getaffinity(0))
    launcher = launcher or {}
    if launcher.get("n_jobs") is not None:
        jobs = cores if launcher["n_jobs"] == -1 else launcher["n_jobs"]
        return max(1, cores // max(1, jobs))
    if launcher.get("cpus_per_task") is not None:
        return max(1, min(cores, launcher["cpus_per_task"]))
    return cores


def check_threads(threads: Optional[int]) -> None:
    """ConfigError (one line) for more torch threads than the cores this process may run on:
    threads=4096 on 2 cores ran an epoch in 17 s instead of 0.01 s, accepted without a word."""
    cores = len(os.sched_getaffinity(0))
    if threads is not None and threads > cores:
        raise ConfigError(f"threads={threads} exceeds the {cores} core(s) this process may run on; valid: 1 to "
                          f"{cores}, or null (the job's share of them)")


def _probe_batch(data: Data, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed subset of train, drawn once from the seed: the same inputs at every epoch."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.y_train), generator=g)[:size].to(data.x_train.device)
    return data.x_train[idx], data.y_train[idx]


def _versions() -> dict[str, str]:
    return {"initlab": __version__, "torch": torch.__version__, "hydra": hydra.__version__,
            "python": platform.python_version()}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run(cfg: DictConfig, job_dir: Path, launcher: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Run (or resume, or skip) the job described by ``cfg`` in ``job_dir``; return result.json.

    Raises ConfigError (one line) for bad settings, and for a folder whose checkpoint or result is
    of a run with other settings (see initlab.resume).
    """
    job = Job(cfg, job_dir, launcher)
    if job.finished is not None:
        return job.finished
    try:
        job.prepare()
        while True:
            job.diverged = job.diverged or _train(job, job.start, job.last_epoch())
            if not job.next_attempt():
                break
        return job.finish()
    finally:
        job.release()


class Job:
    """One job's phases, shared by ``run`` and the vectorized ensemble (initlab.ensemble).

    ``Job(cfg, job_dir)`` decides resume or skip (``finished``: the result.json of a finished
    job, else None); ``prepare()`` builds data, model, init, optimizer, state and callbacks and
    records epoch 0 (or restores the checkpoint); ``end_epoch(...)`` evaluates, probes and runs
    the callbacks after a trained epoch; ``next_attempt()`` starts a restart when one is due;
    ``finish()`` writes result.json. ``start`` is the next epoch to train, ``diverged`` why the
    current attempt diverged (None while finite).
    """

    def __init__(self, cfg: DictConfig, job_dir: Path, launcher: Optional[Mapping[str, Any]] = None):
        self.job_dir = job_dir = Path(job_dir)
        self.launcher = launcher
        self.exp = exp = to_experiment(cfg)
        self.choices = choices_of(exp)
        self.result_path, self.checkpoint_path = job_dir / records.RESULT_JSON, job_dir / records.CHECKPOINT
        self.finished: Optional[dict] = None
        self.extending = False
        self.lock: Optional[int] = None
        if job_dir.is_dir():
            self._hold_folder()
        try:
            self._read_folder()
        except BaseException:
            self.release()
            raise

    def _read_folder(self) -> None:
        """Skip (``finished``), extend, or resume from the checkpoint, as the folder says."""
        exp, job_dir, choices = self.exp, self.job_dir, self.choices
        if exp.resume and self.result_path.is_file():
            finished, self.extending = read_finished(job_dir, choices)
            if not self.extending:
                log.info("%s exists: job already finished, skipping (resume=false reruns it)", self.result_path)
                if finished["choices"].get("epochs") != choices["epochs"]:  # the longer run's result (ended_early)
                    log.info("it %s of its %s; with epochs=%d it ends there too", ended_early(finished),
                             finished["choices"].get("epochs"), choices["epochs"])
                    finished["choices"]["epochs"] = choices["epochs"]  # as .hydra/ now says: one run, not two
                    records.write_json_atomic(self.result_path, finished)
                if finished.get("checkpoint") in UNKEPT and self.checkpoint_path.is_file():
                    self.checkpoint_path.unlink()  # killed between result.json and the checkpoint's removal
                    log.info("removed %s, which the finished run did not keep", records.CHECKPOINT)
                self.finished = finished
                mark_skipped(job_dir)
                self.release()
                return
        self.device = device = resolve_device(exp.device)
        check_threads(exp.threads)
        self.saved = None
        if exp.resume and self.checkpoint_path.exists():
            try:
                saved = torch.load(self.checkpoint_path, map_location=device, weights_only=False)
            except Exception as err:  # noqa: BLE001 - any unreadable file: say which and how to go on
                raise ConfigError(unreadable_checkpoint(job_dir, err)) from err
            if not isinstance(saved, dict) or "epoch" not in saved:  # a file of something else
                raise ConfigError(unreadable_checkpoint(job_dir, ValueError("no initlab train state in it")))
            check_same_run(records.CHECKPOINT, job_dir, saved.get("choices"), choices,
                           checkpoint_epoch=saved["epoch"])
            if "files" not in saved["records"]:
                raise ConfigError(f"{records.CHECKPOINT} in {job_dir} holds its rows (written before records "
                                  f"were appended); resume=false starts the job afresh, or use another folder")
            self.saved = saved

    def prepare(self, data: Optional[Data] = None) -> None:
        """Everything up to the first trained epoch: epoch 0 recorded, or the checkpoint restored.
        ``data``: the loaded dataset on the device (members of an ensemble share one load)."""
        exp, job_dir, saved = self.exp, self.job_dir, self.saved
        device = self.device
        if saved is not None and self.extending:  # until the longer run finishes, the folder holds an unfinished job
            log.info("extending the finished run from epoch %d to %d (its checkpoint was kept)",
                     saved["epoch"], exp.epochs)
            self.result_path.unlink()
        job_dir.mkdir(parents=True, exist_ok=True)
        if self.lock is None:
            self._hold_folder()
        for name in records.remove_temporaries(job_dir):  # a kill -9 mid-write left it; this job owns the folder
            log.info("removed %s, left by an interrupted write", name)
        torch.set_num_threads(exp.threads or default_threads(self.launcher))
        keep_freed_memory()

        if data is None:
            data = load_data(exp.dataset)
            with refused_if_too_large(f"dataset={exp.dataset.name} ({size_params(exp.dataset)}) on {device}"):
                data = data.to(device)
        self.data = data
        self.x_probe, self.y_probe = x_probe, y_probe = _probe_batch(data, exp.probe_size, exp.seed)
        model, init_report = self.fresh_model(exp.seed)
        # activations too large for memory (cnn channels=[10000000]) fail in the first passes, before training
        passes = functools.partial(refused_if_too_large, f"{sizes(exp)} on {device} with probe_size={exp.probe_size}, "
                                                         f"batch_size={exp.batch_size}")
        with passes():
            check_batches(model, x_probe[:1], len(data.y_train), exp.batch_size, exp.probe_size)
            summary, self.n_params = describe(model, x_probe[:2])
        self.model = model
        log.info("model %s, %d parameters\n%s", exp.model.name, self.n_params, summary)
        self.with_val = with_val = data.y_val is not None
        optimizer = build_optimizer(model.parameters(), exp.optimizer)
        track_best = exp.early_stopping.enabled or exp.checkpoint in (KeptCheckpoint.best, KeptCheckpoint.both)
        self.state = state = TrainState(
            model=model, optimizer=optimizer, scheduler=Schedule(optimizer, exp),
            stopper=EarlyStopping(exp.early_stopping) if track_best else None,
            generator=torch.Generator(device=device).manual_seed(exp.seed), seed=exp.seed, init_report=init_report,
            records=records.JobRecords(job_dir, records.EPOCH_COLUMNS + (records.VAL_COLUMNS if with_val else ())
                                       + records.GRAD_COLUMNS))
        self.logger = build_logger(exp, job_dir, x_probe, y_probe, fresh=saved is None,
                                   loss=functools.partial(loss_fn, exp.loss.value))  # before Checkpoint: see its module
        self.callbacks: list[EpochCallback] = [
            Divergence(), MeanField(exp, x_probe),
            Records(exp, x_probe[:probe_count(getattr(exp.model, "width", None))], x_probe),
            StepRecords(), Distributions(exp.distributions_every, x_probe),
            LearningRate(), Stopping(exp.epochs), self.logger,
            Checkpoint(self.checkpoint_path, self.choices, exp.epochs, exp.checkpoint_every_s)]
        self.augment = getattr(data, "augment", None)
        self.loss = exp.loss.value
        if saved is not None:
            state.load_state_dict(saved)
            self.start, self.diverged = state.epoch + 1, None
            log.info("resuming from the checkpoint after epoch %d (attempt %d)", state.epoch, state.records.attempt)
            self.saved = None
        else:
            records.clear(job_dir)  # a fresh start never leaves another run's files beside its own
            self.start = 1
            with passes():
                self.diverged = self.end_epoch(0, *evaluate(model, data.x_train, data.y_train, self.loss),
                                               0.0, None, None).diverged
        params = dict(model.named_parameters())
        measured_names = measured_weights(model, x_probe)  # grad_norm_train's order
        self.measured = [params[name] for name in measured_names]
        self.biases = [params.get(name[: -len("weight")] + "bias") for name in measured_names]

    def end_epoch(self, epoch: int, train_loss: float, train_acc: float, epoch_time: float,
                  grad_norm: Optional[float], grad_norm_train: Optional[list[float]], logged=None,
                  evaluated: Optional[Mapping[str, tuple[float, float]]] = None) -> EpochEnd:
        """Evaluate and probe, then run the callbacks; returns the epoch's measurements.
        ``evaluated``: the (loss, accuracy) of ``test`` (and ``val``) when measured already (the
        ensemble evaluates all members at once); else measured here. An accuracy beside a
        non-finite loss is NaN: the network's outputs were not numbers."""
        model, data, state = self.model, self.data, self.state
        evaluated = evaluated or {}
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
        row["test_loss"], row["test_acc"] = evaluated.get("test") or evaluate(model, data.x_test, data.y_test,
                                                                              self.loss)
        row["epoch_time"], row["lr"] = epoch_time, state.optimizer.param_groups[0]["lr"]
        if self.with_val:
            row["val_loss"], row["val_acc"] = evaluated.get("val") or evaluate(model, data.x_val, data.y_val,
                                                                               self.loss)
        for split in ("train", "test", "val"):  # NaN logits' argmax is class 0: a made-up accuracy
            if f"{split}_loss" in row and not math.isfinite(row[f"{split}_loss"]):
                row[f"{split}_acc"] = math.nan
        row["grad_norm"] = grad_norm
        stats = probe_statistics(model, self.exp.activation.name, self.x_probe, self.y_probe,
                                 self.loss)  # never raises on NaN/Inf
        end = EpochEnd(epoch, row, stats, grad_norm_train, logged=logged)
        state.epoch = epoch
        for callback in self.callbacks:
            callback.on_epoch_end(state, end)
        return end

    def last_epoch(self) -> int:
        """The last epoch this attempt trains: none more once diverged (at init too) or stopped."""
        stopped = self.state.stopper is not None and self.state.stopper.stopped_epoch is not None
        return self.start - 1 if self.diverged or stopped else self.exp.epochs

    def next_attempt(self, epoch0: Optional[tuple[float, float]] = None) -> bool:
        """After an attempt: start the next one (a fresh init, its epoch 0 recorded) when it
        diverged or failed and restarts are left; returns whether one started. ``epoch0``: the
        fresh model's train (loss, accuracy), when measured by the caller."""
        state, exp = self.state, self.exp
        stopper = state.stopper
        if self.diverged:
            log.warning("diverged at epoch %d (%s): recording the run as diverged", state.epoch, self.diverged)
        if state.records.attempt >= exp.early_stopping.restarts or not (self.diverged or stopper.failed()):
            return False
        log.info("attempt %d %s (best %s %s; early_stopping.restart_below=%s): restarting from a fresh init",
                 state.records.attempt, "diverged" if self.diverged else "failed", exp.early_stopping.monitor.value,
                 stopper.best, exp.early_stopping.restart_below)
        self.reinit(state.records.attempt + 1)
        train = epoch0 or evaluate(self.model, self.data.x_train, self.data.y_train, self.loss)
        self.diverged, self.start = self.end_epoch(0, *train, 0.0, None, None).diverged, 1
        return True

    def _hold_folder(self) -> None:
        """Lock the job folder until ``release()`` (records.lock_folder): before reading an existing
        folder's result or checkpoint, else once ``prepare`` has created it, before any write."""
        self.lock = records.lock_folder(self.job_dir)  # FolderInUse, a ConfigError: one line

    def release(self) -> None:
        """Let other jobs into the folder (``records.lock_folder``); done by ``run`` and
        ``run_group`` however the job ends, and on the skip of a finished job."""
        records.unlock_folder(self.lock)
        self.lock = None

    def fresh_model(self, seed: int) -> tuple[nn.Module, Optional[dict]]:
        """The model built and initialized from ``seed`` on the job's device (the one place a
        job initializes weights), and the init's report for result.json's ``init_report``: a
        data-dependent init (LSUV) rescales on the probe batch and reports per-layer variances and
        iterations; None for the others."""
        torch.manual_seed(seed)
        with refused_if_too_large(f"{sizes(self.exp)} on {self.device}"):
            model = build_model(self.exp, self.data).to(self.device)
            return model, initialize(model, self.exp.init, self.exp.model, self.x_probe)

    def reinit(self, attempt: int) -> None:
        """Restart from a fresh init drawn from the attempt's seed (the same module objects:
        callbacks keep theirs); fresh optimizer, schedule and stopper; epoch 0 not yet recorded."""
        state, exp = self.state, self.exp
        seed = attempt_seed(exp.seed, attempt)
        fresh, state.init_report = self.fresh_model(seed)
        self.model.load_state_dict(fresh.state_dict())  # copies into the parameters in place
        state.optimizer = build_optimizer(self.model.parameters(), exp.optimizer)
        state.scheduler = Schedule(state.optimizer, exp)
        state.stopper.reset()
        state.generator.manual_seed(seed)
        state.records.attempt = attempt

    def finish(self) -> dict[str, Any]:
        """Restore the best weights where early stopping asks, write result.json (and best.pt),
        drop the checkpoint unless kept; returns result.json's content."""
        exp, state, model, data, diverged = self.exp, self.state, self.model, self.data, self.diverged
        restored = bool(exp.early_stopping.enabled and not diverged and state.stopper.best_weights is not None)
        if restored:
            model.load_state_dict(state.stopper.best_weights)
            log.info("restored the weights of epoch %d (best %s %.6g)", state.stopper.best_epoch,
                     exp.early_stopping.monitor.value, state.stopper.best)
        rec = state.records
        result = {
            "status": "diverged" if diverged else "completed",
            "diverged_epoch": rec.last_epoch["epoch"] if diverged else None,
            "final": state.stopper.best_row | {records.ATTEMPT: rec.attempt} if restored else rec.last_epoch,
            "final_attempt": rec.attempt,
            "best_epoch": None if state.stopper is None else state.stopper.best_epoch,
            "stopped_epoch": None if state.stopper is None else state.stopper.stopped_epoch,
            "restored_best": restored,
            "wall_time": state.wall_time(),
            "train_time": rec.train_time,
            "choices": self.choices,
            "data": {"n_features": data.n_features, "n_classes": data.n_classes, "n_train": len(data.y_train),
                     "n_val": 0 if data.y_val is None else len(data.y_val), "n_test": len(data.y_test)},
            "n_params": self.n_params,
            "theory": state.mean_field["phase"],
            "theory_reason": theory_reason(exp),
            "init_report": state.init_report,
            "activation_transform": kernel_shaping.solved(model),
            "rows": rec.row_counts(),
            "versions": _versions(),
            "device": _device_name(self.device),
            "checkpoint": exp.checkpoint.value,
            "job_num": _sweep_job_num(self.job_dir),
        }
        if exp.checkpoint in (KeptCheckpoint.best, KeptCheckpoint.both) and state.stopper.best_weights is not None:
            buf = io.BytesIO()
            torch.save(state.stopper.best_weights, buf)
            records.write_bytes_atomic(self.job_dir / records.BEST_WEIGHTS, buf.getvalue())
        self.logger.close(state, result)
        records.write_json_atomic(self.result_path, result)
        if exp.checkpoint.value in UNKEPT:
            self.checkpoint_path.unlink(missing_ok=True)
        return result


def _sweep_job_num(job_dir: Path) -> Optional[int]:
    """Hydra's job number of the sweep run training this folder (``.hydra/hydra.yaml``, written
    as the job starts; None for a single run or a job run without Hydra): an Optuna search's trial
    number, which a later trial repeating the same values (skipped) overwrites in .hydra/."""
    hydra_yaml = job_dir / ".hydra" / "hydra.yaml"
    if not hydra_yaml.is_file():
        return None
    from omegaconf import OmegaConf

    hydra = OmegaConf.load(hydra_yaml).get("hydra", {})
    num = OmegaConf.select(hydra, "job.num", default=None) if OmegaConf.select(hydra, "mode") == "MULTIRUN" else None
    return int(num) if isinstance(num, int) else None


def attempt_seed(seed: int, attempt: int) -> int:
    """The seed of restart ``attempt`` (0: the run's own seed), in [0, 2**32): NumPy's SeedSequence
    mixes (seed, attempt), so attempts of neighbouring seeds never share an init."""
    if attempt == 0:
        return seed
    return int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])


def overflowed_epoch(epoch: int, why: str) -> tuple[float, float]:
    """The train (loss, accuracy) recorded for an epoch whose optimizer step overflowed float32
    (initlab.train.loop.step_or_overflow; the weights are NaN since): inf and NaN, whichever step
    it was, so the epoch diverges as every overflowing run does, recorded, not crashed, alike in
    every launcher. Logs why."""
    log.warning("epoch %d: the optimizer's update overflowed float32 (%s): weights set to NaN", epoch, why)
    return math.inf, math.nan


def _train(job: Job, start: int, last: int) -> Optional[str]:
    """Epochs ``start``..``last`` of the current attempt; returns why one diverged, or None.
    Stops after an epoch that early stopping marks as the last."""
    state, exp, data = job.state, job.exp, job.data
    steps_per_epoch = -(-len(data.y_train) // exp.batch_size)  # steps.csv counts steps over the whole run
    with logging_redirect_tqdm():  # log lines go through tqdm.write, above the bar; file logs unchanged
        bar = tqdm(range(start, last + 1), desc=job.job_dir.name[-40:], unit="epoch", disable=None,
                   initial=start - 1, total=exp.epochs)
        for epoch in bar:
            t0 = time.perf_counter()
            sums = train_epoch(state.model, state.optimizer, data.x_train, data.y_train, exp.batch_size,
                               state.generator, job.measured, job.augment, loss=exp.loss.value,
                               log_every=exp.log_every_steps, first_step=(epoch - 1) * steps_per_epoch + 1,
                               biases=job.biases)
            train_loss = sums.loss.item() / sums.steps  # the epoch's one host sync
            train_acc = sums.correct.item() / sums.samples
            if sums.overflow is not None:
                train_loss, train_acc = overflowed_epoch(epoch, sums.overflow)
            epoch_time = time.perf_counter() - t0
            end = job.end_epoch(epoch, train_loss, train_acc, epoch_time, sums.total_grad_norm.item() / sums.steps,
                                (sums.grad_norms / sums.steps).tolist(), sums.logged)
            bar.set_postfix(loss=f"{train_loss:.4f}", test_acc=f"{end.row['test_acc']:.4f}")
            if end.diverged or end.stop:
                bar.close()
                return end.diverged
        bar.close()
    return None
