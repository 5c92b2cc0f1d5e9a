"""Hydra callback: a sweep checked whole before it starts, then its progress, ETA and one summary.

Before any job runs, every job of the sweep is composed and validated (``initlab.sweeps``); a bad
one stops the sweep with one line and exit code 2. The job total is the number of jobs the basic
sweeper launches, ``n_trials`` for the Optuna sweeper, cut to the grid's size under its grid
sampler (``initlab.sweeps.trial_count``; its jobs are checked at the corners of its search space,
``initlab.sweeps.search_jobs``), and unknown, so not shown, for other sweepers.
A job's status (completed, diverged) is read from its result.json: under an optimizing sweeper a
job returns its objective value, not the record.

Under the joblib and submitit launchers ``on_job_end`` runs in worker processes that share no
memory with the launching one, so every job that ends writes one small file into this sweep's
ledger, ``<sweep>/.progress/<sweep id>/<job num>.json`` (its folder, status and error). Counting
ledger entries counts this sweep's own jobs only: never those of an earlier sweep into the same
folder, never one job twice. The launching process polls the ledger in a thread (and after each
job it runs itself), logs ``[sweep] k/N jobs done`` whenever k changes and the summary once, so
the console that started the sweep shows progress under every launcher.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from initlab.config import ConfigError
from initlab.records import (LEDGER, RESULT_JSON, SWEEP_JSON, FolderInUse, remove_temporaries, write_bytes_atomic,
                             write_json_atomic)
from initlab.resume import was_skipped
from initlab.sweep_workers import exit_with_the_sweep, remember_sweep_process
from initlab.sweeps import (check_distinct_jobs, check_job_folders, check_job_records, check_search, search_jobs,
                             grid_size, sweep_jobs, trial_count, validate_jobs)

log = logging.getLogger("initlab.sweep")

MULTIRUN_YAML = "multirun.yaml"
FAILED = "FAILED"
SUMMARY = "SUMMARY"
POLL_SECONDS = 0.5
SUBMITIT_TAGS = ("%j", "%t", "%A", "%a")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def read_ledger(ledger: Path, known: Optional[dict[str, dict]] = None) -> list[dict]:
    """The entries of one sweep's ledger: one dict per ended job (job, status, skipped, error).

    ``known`` caches entries by file name, so a poll reads only the entries new since the last.
    """
    known = {} if known is None else known
    for path in ledger.glob("*.json"):
        if path.name not in known:
            try:
                known[path.name] = json.loads(path.read_text())
            except (OSError, ValueError):  # written atomically; absent only if the ledger was removed
                continue
    return list(known.values())


def _claim(path: Path) -> bool:
    """True for exactly one caller over all processes: creates ``path`` with O_EXCL."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


class Monitor:
    """Progress of one sweep, logged by the process that launched it."""

    def __init__(self, sweep_dir: Path, meta: dict, submitit_folder: Optional[str]) -> None:
        self.sweep_dir, self.meta, self.submitit_folder = sweep_dir, meta, submitit_folder
        self.ledger = sweep_dir / LEDGER / meta["id"]
        self.done = 0
        self.finished = False
        self._entries: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="initlab-sweep-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll()

    def poll(self, final: bool = False) -> None:
        """Log the count if it changed, and the summary when every job has ended (or ``final``)."""
        with self._lock:
            if self.finished:
                return
            entries = read_ledger(self.ledger, self._entries)
            total, elapsed = self.meta["total"], time.time() - self.meta["start"]
            if len(entries) != self.done:
                self.done = len(entries)
                if total is None:
                    log.info("[sweep] %d jobs done, elapsed %s", self.done, _duration(elapsed))
                else:
                    ran = sum(not e.get("skipped") for e in entries)
                    eta = _duration(elapsed / ran * (total - self.done)) if ran else "unknown"
                    log.info("[sweep] %d/%d jobs done, elapsed %s, ETA %s", self.done, total,
                             _duration(elapsed), eta)
            if final or (total is not None and self.done >= total):
                self.finished = True
                if _claim(self.ledger / SUMMARY):
                    self._summarize(entries, elapsed, total)

    def _summarize(self, entries: list[dict], elapsed: float, total: Optional[int]) -> None:
        count = {s: sum(e["status"] == s for e in entries) for s in ("completed", "diverged", "failed")}
        skipped = sum(bool(e.get("skipped")) for e in entries)
        failures = ", ".join(f"{e['job']} ({e['error']})" for e in sorted(entries, key=lambda e: e["job"])
                             if e["status"] == "failed")
        ended = "finished" if total is None or len(entries) >= total else \
            f"stopped with {total - len(entries)} of {total} jobs not ended"
        line = (f"[sweep] {ended} in {_duration(elapsed)}: {count['completed']} completed, "
                f"{count['diverged']} diverged, {count['failed']} failed"
                + (f" ({skipped} already finished, skipped)" if skipped else "")
                + (f": {failures}" if failures else ""))
        (self.ledger / SUMMARY).write_text(line + "\n")
        log.info("%s", line)

    def stop(self) -> None:
        """Stop polling, log what is left and the summary, and remove submitit's template folder."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.poll(final=True)
        _remove_template_folder(self.submitit_folder)


def _remove_template_folder(folder: Optional[str]) -> None:
    """submitit's local executor creates its folder template (``.submitit/%j``) literally, empty."""
    if not folder or not any(tag in folder for tag in SUBMITIT_TAGS):
        return
    path = Path(folder)
    try:
        path.rmdir()  # only if empty, and only the literal template (a real job folder has no %)
    except OSError:
        pass


_monitor: Optional[Monitor] = None  # the launching process's monitor; None in worker processes


def _stop_monitor() -> None:
    global _monitor
    if _monitor is not None:
        monitor, _monitor = _monitor, None
        monitor.stop()


class SweepProgress(Callback):
    """Validates a sweep before it runs; logs ``jobs done/total, elapsed, ETA`` and one summary."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _monitor
        sweep_dir = Path(config.hydra.sweep.dir)
        tic = time.perf_counter()
        jobs = sweep_jobs(config)
        try:
            corners = search_jobs(config)
            check_search(config)
            trials, grid = trial_count(config), grid_size(config)
            if jobs is not None or corners is not None:
                experiments = validate_jobs(config, jobs if jobs is not None else corners)
            if jobs is not None:
                folders = check_job_folders(config, jobs)
                check_distinct_jobs(jobs, experiments)
                if folders is not None:
                    check_job_records(sweep_dir, jobs, folders, experiments)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        checked = time.perf_counter() - tic
        remember_sweep_process()  # before the launcher starts any worker
        sweep_dir.mkdir(parents=True, exist_ok=True)
        remove_temporaries(sweep_dir)  # a sweep killed while writing sweep.json
        total = len(jobs) if jobs is not None else trials
        meta = {"id": uuid.uuid4().hex[:12], "total": total, "start": time.time()}
        shutil.rmtree(sweep_dir / LEDGER, ignore_errors=True)  # ledgers of earlier sweeps into this folder
        (sweep_dir / LEDGER / meta["id"]).mkdir(parents=True)
        write_json_atomic(sweep_dir / SWEEP_JSON, meta)
        if corners is not None:  # the basic sweeper writes it, Optuna's does not: analyze.py finds sweeps by it
            OmegaConf.save(config, sweep_dir / MULTIRUN_YAML)
        if jobs is not None:
            log.info("[sweep] %d jobs in %s, all configs valid (checked in %.1f s)", len(jobs), sweep_dir, checked)
        elif corners is not None:
            points = "grid points" if grid_size(config) == len(corners) else "corners"  # search_jobs' grid
            log.info("[sweep] search of %d trials in %s, the search space's %d %s valid (checked in %.1f s)",
                     total, sweep_dir, len(corners), points, checked)
            if grid is not None and total < grid:
                log.warning("[sweep] the grid sampler runs %d of its %d points, chosen at random and unseeded "
                            "(optuna's GridSampler): a rerun may train others; n_trials >= %d runs the whole grid",
                            total, grid, grid)
        _stop_monitor()
        _monitor = Monitor(sweep_dir, meta, config.hydra.launcher.get("submitit_folder"))
        atexit.register(_stop_monitor)  # also after a failed job, when Hydra skips on_multirun_end

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _stop_monitor()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            exit_with_the_sweep(str(config.hydra.launcher.get("_target_", "")))
            (Path(config.hydra.runtime.output_dir) / FAILED).unlink(missing_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir, job_dir = Path(config.hydra.sweep.dir), Path(config.hydra.runtime.output_dir)
        entry: dict[str, Any] = {"job": os.path.relpath(job_dir, sweep_dir)}
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value
            if not isinstance(error, FolderInUse):  # that folder is the running job's, not this one's
                write_bytes_atomic(job_dir / FAILED, f"{type(error).__name__}: {error}\n".encode())
            first_line = (str(error).strip().splitlines() or [""])[0]
            entry.update(status="failed", error=f"{type(error).__name__}: {first_line}")  # the summary is one line
        else:
            try:
                entry["status"] = json.loads((job_dir / RESULT_JSON).read_text()).get("status", "completed")
            except (OSError, ValueError):
                entry["status"] = "completed"
        try:
            meta = json.loads((sweep_dir / SWEEP_JSON).read_text())
        except (OSError, ValueError):
            return  # a job run outside a sweep started by this callback
        entry["skipped"] = was_skipped(job_dir)  # found its result: a rerun's, or an optimizing sweeper's repeat
        ledger = sweep_dir / LEDGER / meta["id"]
        if ledger.is_dir():
            write_json_atomic(ledger / f"{config.hydra.job.num}.json", entry)
        if _monitor is not None:
            _monitor.poll()  # the basic launcher: report right after the job, in its log too
