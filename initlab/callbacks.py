"""Hydra callback: sweep progress, ETA and a closing summary, counted from the sweep folder.

Under the joblib and SLURM launchers ``on_job_end`` runs in worker processes that share no memory,
so every count comes from disk: a job with ``result.json`` has ended (completed or diverged), a job
with ``FAILED`` (written here, holding the error) has failed. ``sweep.json`` at the sweep root holds
the job total and start time, written when the sweep starts. The process that ends the last job
logs the summary; it works the same for the basic, joblib and submitit launchers.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from initlab.records import RESULT_JSON, write_bytes_atomic, write_json_atomic

log = logging.getLogger("initlab.sweep")

SWEEP_JSON = "sweep.json"
FAILED = "FAILED"


def count_jobs(config: DictConfig) -> Optional[int]:
    """The number of jobs the basic sweeper expands this multirun into (None for other sweepers)."""
    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    arguments = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    arguments += list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return sum(len(batch) for batch in BasicSweeper.split_arguments(overrides, None))


def sweep_status(sweep_dir: Path) -> dict[str, list[Path]]:
    """Job folders under ``sweep_dir`` grouped by how they ended: completed, diverged, failed."""
    groups: dict[str, list[Path]] = {"completed": [], "diverged": [], "failed": []}
    for result in sweep_dir.rglob(RESULT_JSON):
        try:
            status = json.loads(result.read_text()).get("status", "completed")
        except (OSError, ValueError):
            continue
        groups["diverged" if status == "diverged" else "completed"].append(result.parent)
    groups["failed"] = [marker.parent for marker in sweep_dir.rglob(FAILED)
                        if not (marker.parent / RESULT_JSON).exists()]
    return groups


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class SweepProgress(Callback):
    """Logs ``jobs done/total, elapsed, ETA`` after every job and one summary line at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        total = count_jobs(config)
        ended = sum(len(v) for k, v in sweep_status(sweep_dir).items() if k != "failed")
        write_json_atomic(sweep_dir / SWEEP_JSON, {"total": total, "start": time.time(), "ended_before": ended})
        if total is not None:
            log.info("sweep of %d jobs in %s (%d already finished)", total, sweep_dir, ended)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            (Path(config.hydra.runtime.output_dir) / FAILED).unlink(missing_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value
            write_bytes_atomic(job_dir / FAILED, f"{type(error).__name__}: {error}\n".encode())
        self._report(Path(config.hydra.sweep.dir))

    def _report(self, sweep_dir: Path) -> None:
        try:
            meta = json.loads((sweep_dir / SWEEP_JSON).read_text())
        except (OSError, ValueError):
            return
        groups = sweep_status(sweep_dir)
        done = sum(len(v) for v in groups.values())
        total, elapsed = meta["total"], time.time() - meta["start"]
        if total is None:
            log.info("[sweep] %d jobs done, elapsed %s", done, _duration(elapsed))
            return
        run_here = max(done - meta["ended_before"], 1)
        eta = elapsed / run_here * max(total - done, 0)
        log.info("[sweep] %d/%d jobs done, elapsed %s, ETA %s", done, total, _duration(elapsed), _duration(eta))
        if done >= total:
            failed = ", ".join(f"{p.relative_to(sweep_dir)} ({(p / FAILED).read_text().strip()})"
                               for p in groups["failed"])
            log.info("[sweep] finished in %s: %d completed, %d diverged, %d failed%s", _duration(elapsed),
                     len(groups["completed"]), len(groups["diverged"]), len(groups["failed"]),
                     f": {failed}" if failed else "")
