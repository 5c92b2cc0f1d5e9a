"""The launcher presets that need no cluster (conf/hydra/launcher/parallel.yaml, local.yaml), and how a
failing job shows up in a sweep under the basic and the joblib launchers.

Every sweep is a real ``python train.py -m`` run; they are submitted up front to the two-process pool
(``train_pool``) and each test collects its own.
"""

from __future__ import annotations

import os
import pickle
from concurrent.futures import Future
from pathlib import Path

import pytest

from conftest import DAMAGED, Completed, damage_checkpoint, read_csv, read_json, train_env
from initlab.train.job import unreadable_checkpoint

SWEEPS = {
    # n_jobs unset: INITLAB_N_JOBS falls back to -1, one worker per core.
    "parallel": ["hydra/launcher=parallel", "depth=2,3", "epochs=1"],
    "parallel_one_worker": ["hydra/launcher=parallel", "depth=2,3", "epochs=1"],  # INITLAB_N_JOBS=1
    # submitit's local executor: each job a subprocess, as on SLURM (~20 s here for two jobs).
    "local": ["hydra/launcher=local", "depth=2,3", "epochs=1"],
    # A job that fails at run time (a bad config never starts: tests/test_sweeps.py): its folder
    # holds a damaged checkpoint.pt, which only the job loads (written by the fixture).
    "basic_failing": ["depth=2", "epochs=1", "seed=0,1"],
    "parallel_failing": ["hydra/launcher=parallel", "depth=2", "epochs=1", "seed=0,1"],
}
FAILED_JOB = "depth=2,epochs=1,seed=1"


@pytest.fixture(scope="module")
def sweeps(request, tmp_path_factory, train_pool) -> dict[str, tuple[Path, Future]]:
    """Submits the sweeps that the selected tests of this module use (their ``name`` parameter)."""
    wanted = {item.callspec.params.get("name") for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec")}
    root = tmp_path_factory.mktemp("launchers")
    submitted = {}
    for name, args in SWEEPS.items():
        if name not in wanted:
            continue
        env = train_env()
        env.pop("INITLAB_N_JOBS", None)
        if name == "parallel_one_worker":
            env["INITLAB_N_JOBS"] = "1"
        sweep = root / name
        if name.endswith("_failing"):
            damage_checkpoint(sweep / FAILED_JOB)
        submitted[name] = (sweep, train_pool("-m", *args, f"hydra.sweep.dir={sweep}", env=env, timeout=240))
    return submitted


def finished(sweeps, name: str, returncode: int = 0) -> tuple[Path, Completed]:
    sweep, future = sweeps[name]
    done = future.result()
    assert done.returncode == returncode, done.describe()
    return sweep, done


def job_dirs(sweep: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sweep.glob("*/.hydra")}


def threads_of(job: Path) -> int:
    """The torch thread count the job ran with, from result.json's device, e.g. 'cpu (x86_64, 2 threads)'."""
    device = read_json(job / "result.json")["device"]
    assert device.startswith("cpu (") and device.endswith(" threads)"), device
    return int(device.rsplit(", ", 1)[1].split()[0])


def assert_completed(job: Path, epochs: int = 1) -> None:
    for name in ("epochs.csv", "layers.csv", "result.json"):
        assert (job / name).is_file(), f"{job.name}: no {name}"
    assert read_json(job / "result.json")["status"] == "completed"
    assert [int(r["epoch"]) for r in read_csv(job / "epochs.csv")] == list(range(epochs + 1))
    assert not (job / "FAILED").exists()


CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("name, n_jobs", [pytest.param("parallel", -1, marks=pytest.mark.slow), ("parallel_one_worker", 1)])
def test_parallel_preset_gives_each_job_its_share_of_the_cores(sweeps, name, n_jobs):
    sweep, done = finished(sweeps, name)
    assert f"Joblib.Parallel(n_jobs={n_jobs}," in done.stdout + done.stderr
    workers = CORES if n_jobs == -1 else n_jobs
    jobs = job_dirs(sweep)
    assert sorted(jobs) == ["depth=2,epochs=1", "depth=3,epochs=1"]
    for job in jobs.values():
        assert_completed(job)
        assert threads_of(job) == max(1, CORES // workers), f"{job.name}: {workers} joblib workers, {CORES} cores"
    assert "2 completed, 0 diverged, 0 failed" in done.stdout + done.stderr


@pytest.mark.parametrize("name", [pytest.param("local", marks=pytest.mark.slow)])
def test_submitit_local_preset_runs_a_sweep(sweeps, name):
    sweep, done = finished(sweeps, name)
    jobs = job_dirs(sweep)
    assert sorted(jobs) == ["depth=2,epochs=1", "depth=3,epochs=1"]
    for job in jobs.values():
        assert_completed(job)
        assert threads_of(job) == 1  # cpus_per_task: 1
    # submitit's own records: one folder per job, each with its log and result pickle, and no
    # empty folder named after the template (.submitit/%j, made by submitit's local executor).
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2, logs
    assert all("Job completed successfully" in log.read_text() for log in logs)
    assert all(list(log.parent.glob("*_result.pkl")) for log in logs)
    assert [p.name for p in (sweep / ".submitit").iterdir() if "%" in p.name] == []
    # The jobs run in subprocesses, yet the launching process shows the progress and one summary.
    output = done.stdout + done.stderr
    assert "[sweep] 2/2 jobs done" in output
    assert output.count("[sweep] finished in") == 1
    assert "2 completed, 0 diverged, 0 failed" in output


@pytest.mark.parametrize("name", ["basic_failing", pytest.param("parallel_failing", marks=pytest.mark.slow)])
def test_a_failing_job_does_not_hide_the_others(sweeps, name):
    sweep, done = finished(sweeps, name, returncode=1)
    output = done.stdout + done.stderr
    jobs = job_dirs(sweep)
    assert sorted(jobs) == ["depth=2,epochs=1,seed=0", FAILED_JOB]
    assert_completed(jobs["depth=2,epochs=1,seed=0"])

    failed = jobs[FAILED_JOB]
    error = unreadable_checkpoint(failed, pickle.UnpicklingError("invalid load key, 'n'."))
    assert (failed / "FAILED").read_text().strip() == f"ConfigError: {error}"
    assert error in (failed / "train.log").read_text()
    assert not (failed / "result.json").exists()
    assert (failed / "checkpoint.pt").read_bytes() == DAMAGED  # left as it was, for the user to look at
    assert "Error executing job with overrides: ['depth=2', 'epochs=1', 'seed=1']" in output

    # The launching process logs the summary, once, also when Hydra stops on the failed job.
    summary = f"1 completed, 0 diverged, 1 failed: {FAILED_JOB} (ConfigError: {error})"
    assert output.count("[sweep] finished in") == 1 and summary in output, output[-3000:]
