"""Nothing lost, nothing done twice: killed jobs and sweeps resume; finished jobs are skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Small blobs set: a few tenths of a second per epoch, long enough to kill a job mid-training.
SLOW_JOB = ["dataset=blobs", "dataset.n_train=6000", "dataset.n_test=500", "dataset.n_features=32",
            "depth=6", "model.width=64", "probe_size=256", "threads=1"]


def train(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def start_train(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when(proc: subprocess.Popen, condition, timeout: float = 120.0) -> None:
    """SIGKILL the whole process group as soon as ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "timed out waiting to interrupt the run"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def read_csvs(job_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """epochs.csv without its wall-clock column, and layers.csv."""
    epochs = pd.read_csv(job_dir / "epochs.csv").drop(columns="epoch_time")
    return epochs, pd.read_csv(job_dir / "layers.csv")


def checkpointed_epoch(job_dir: Path) -> int:
    """The last epoch in epochs.csv once a checkpoint exists (-1 before)."""
    if not (job_dir / "checkpoint.pt").exists():
        return -1
    try:
        return int(pd.read_csv(job_dir / "epochs.csv")["epoch"].max())
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return -1


def test_interrupted_job_continues_from_its_checkpoint_identically(tmp_path):
    config = [*SLOW_JOB, "epochs=12"]
    train(*config, f"hydra.run.dir={tmp_path / 'whole'}")

    job = tmp_path / "interrupted"
    proc = start_train(*config, f"hydra.run.dir={job}")
    kill_when(proc, lambda: checkpointed_epoch(job) >= 3)
    assert not (job / "result.json").exists()
    stopped_at = checkpointed_epoch(job)
    assert 3 <= stopped_at < 12

    train(*config, f"hydra.run.dir={job}")
    assert "resuming from the checkpoint after epoch" in (job / "train.log").read_text()
    assert json.loads((job / "result.json").read_text())["status"] == "completed"
    assert not (job / "checkpoint.pt").exists(), "checkpoints are removed when the job completes"
    for resumed, whole in zip(read_csvs(job), read_csvs(tmp_path / "whole")):
        pd.testing.assert_frame_equal(resumed, whole, check_exact=True)


def test_killed_sweep_reruns_only_unfinished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", *SLOW_JOB, "epochs=6", "depth=2,3,4,5", f"hydra.sweep.dir={sweep}"]
    proc = start_train(*command)
    kill_when(proc, lambda: len(list(sweep.rglob("result.json"))) >= 1)
    finished = {p.parent: p.stat().st_mtime_ns for p in sweep.rglob("result.json")}
    assert 1 <= len(finished) < 4
    csv_mtimes = {d: (d / "layers.csv").stat().st_mtime_ns for d in finished}

    rerun = train(*command)
    results = sorted(sweep.rglob("result.json"))
    assert len(results) == 4
    assert all(json.loads(p.read_text())["status"] == "completed" for p in results)
    for job_dir, mtime in finished.items():
        assert (job_dir / "result.json").stat().st_mtime_ns == mtime, f"{job_dir.name} was rerun"
        assert (job_dir / "layers.csv").stat().st_mtime_ns == csv_mtimes[job_dir]
    assert "4/4 jobs done" in rerun.stderr + rerun.stdout
    assert "4 completed, 0 diverged, 0 failed" in rerun.stderr + rerun.stdout


@pytest.mark.parametrize("keep", [False, True])
def test_finished_job_is_skipped_unless_resume_false(tmp_path, keep):
    args = ["epochs=1", "depth=2", f"keep_checkpoint={str(keep).lower()}", f"hydra.run.dir={tmp_path}"]
    train(*args)
    assert (tmp_path / "checkpoint.pt").exists() == keep
    result = tmp_path / "result.json"
    first = result.stat().st_mtime_ns

    train(*args)
    assert result.stat().st_mtime_ns == first
    assert "job already finished, skipping" in (tmp_path / "train.log").read_text()

    train(*args, "resume=false")
    assert result.stat().st_mtime_ns > first
    assert len(pd.read_csv(tmp_path / "epochs.csv")) == 2, "a forced rerun starts from scratch"
