"""The batched launcher (hydra_plugins/initlab_batched_launcher, conf/hydra/launcher/batched*.yaml):
the same job folders as the basic launcher, the sweep's progress and summary, a failing member that
fails alone, kill -9 mid-group then a rerun, and groups as the unit of work of joblib and submitit.

Every sweep is a real ``python train.py -m`` run, submitted up front to the two-process pool
(``train_pool``); each test collects its own.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import (CONF, DAMAGED, ROOT, Completed, damage_checkpoint, read_csv, read_json, run_train, train_env,
                      train_refused_in_process)
from initlab.train.job import unreadable_checkpoint

TINY = ["depth=2,3", "seed=0,1", "epochs=2", "threads=1", "probe_size=200"]
SWEEPS = {
    "basic": TINY,
    "batched": ["hydra/launcher=batched", *TINY],
    "batched_parallel": ["hydra/launcher=batched_parallel", *TINY],
    "batched_local": ["hydra/launcher=batched_local", *TINY],
    # One member fails at run time (a bad config never starts): its folder holds a damaged
    # checkpoint.pt, which only the job loads (written by the fixture).
    "batched_failing": ["hydra/launcher=batched", "depth=2", "epochs=1", "seed=0,1", "threads=1"],
}
JOBS = sorted(f"depth={d},epochs=2,probe_size=200,seed={s}" for d in (2, 3) for s in (0, 1))
TIMES = ("epoch_time", "wall_time", "train_time")  # wall clock: differs from run to run
FAILED_MEMBER = "depth=2,epochs=1,seed=1"


@pytest.fixture(scope="module")
def sweeps(request, tmp_path_factory, train_pool) -> dict[str, tuple[Path, Future]]:
    """Submits the sweeps that the selected tests of this module use (their ``name`` parameter)."""
    wanted = {name for item in request.session.items if item.module is request.module and hasattr(item, "callspec")
              for key, name in item.callspec.params.items() if key == "name"}
    root = tmp_path_factory.mktemp("batched")
    submitted = {}
    for name, args in SWEEPS.items():
        if name in wanted or (name == "basic" and "batched" in wanted):
            sweep = root / name
            if name == "batched_failing":
                damage_checkpoint(sweep / FAILED_MEMBER)
            submitted[name] = (sweep, train_pool("-m", *args, f"hydra.sweep.dir={sweep}", timeout=300))
    return submitted


def finished(sweeps, name: str, returncode: int = 0) -> tuple[Path, Completed]:
    sweep, future = sweeps[name]
    done = future.result()
    assert done.returncode == returncode, done.describe()
    return sweep, done


def job_dirs(sweep: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sweep.glob("*/.hydra")}


def files(job: Path) -> list[str]:
    return sorted(str(p.relative_to(job)) for p in job.rglob("*") if p.is_file())


def assert_close(a: Any, b: Any, where: str) -> None:
    """Equal JSON-like values, floats to 1e-5 relative or 1e-6 absolute (the ensemble's sums run in
    another order; a mean near 0 of O(1) entries, e.g. preact_mean -0.0095, keeps only their float32
    rounding: on an AMD EPYC CPU the resumed group's differed from the basic run's by 1.2e-7 after 3 epochs);
    shares of entries (frac_*) to 1e-4: a pre-activation at 0 may fall on either side (1 of 32768 did)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            if key not in TIMES:
                assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        abs_tol = 1e-4 if where.rsplit(".", 1)[-1].startswith("frac_") else 1e-6
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=abs_tol) or (math.isnan(a) and math.isnan(b)), \
            f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def as_number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def assert_same_csv(a: Path, b: Path) -> None:
    rows_a, rows_b = read_csv(a), read_csv(b)
    assert len(rows_a) == len(rows_b), f"{a}: {len(rows_a)} rows, {b}: {len(rows_b)}"
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
        assert_close({k: as_number(v) for k, v in ra.items()}, {k: as_number(v) for k, v in rb.items()},
                     f"{a.parent.name}/{a.name} row {i}")


def assert_same_jobs(sweep: Path, reference: Path) -> None:
    """The same job folders, files and values (CSVs and result.json to float tolerance; the job's
    config and overrides exactly; Hydra's job fields but the launcher and the sweep folder)."""
    jobs, expected = job_dirs(sweep), job_dirs(reference)
    assert sorted(jobs) == sorted(expected)
    for name, job in jobs.items():
        ref = expected[name]
        assert files(job) == files(ref), name
        for path in job.glob("*.csv"):
            assert_same_csv(path, ref / path.name)
        assert_close(read_json(job / "result.json"), read_json(ref / "result.json"), f"{name}/result.json")
        for kept in ("config.yaml", "overrides.yaml"):
            assert (job / ".hydra" / kept).read_text() == (ref / ".hydra" / kept).read_text(), f"{name}/{kept}"
        hydra, ref_hydra = (yaml.safe_load((p / ".hydra" / "hydra.yaml").read_text())["hydra"] for p in (job, ref))
        assert hydra["job"] == ref_hydra["job"], name
        assert hydra["overrides"]["task"] == ref_hydra["overrides"]["task"], name
        assert hydra["runtime"]["output_dir"] == str(job.resolve())


@pytest.mark.parametrize("name", ["batched"])
def test_batched_sweep_writes_the_basic_launchers_job_folders(sweeps, name):
    sweep, done = finished(sweeps, name)
    reference, _ = finished(sweeps, "basic")
    assert sorted(job_dirs(sweep)) == JOBS
    assert_same_jobs(sweep, reference)
    output = done.stdout + done.stderr
    # The grouping it chose: seeds share a group, depths do not.
    assert "[batched] 4 jobs in 2 groups" in output, output[-3000:]
    assert "[batched] group 1: 2 jobs #0 #1" in output and "[batched] group 2: 2 jobs #2 #3" in output
    # Progress and one summary, as under the other launchers.
    assert "[sweep] 4/4 jobs done" in output
    assert output.count("[sweep] finished in") == 1 and "4 completed, 0 diverged, 0 failed" in output
    # Each member's log holds its own lines only (its group trained two models): one model, one last epoch.
    for job in job_dirs(sweep).values():
        log = (job / "train.log").read_text()
        assert log.count("model mlp,") == 1 and log.count("epoch 2/2") == 1, job.name


@pytest.mark.parametrize("name", [pytest.param("batched_parallel", marks=pytest.mark.slow)])
def test_parallel_preset_runs_groups_as_joblib_tasks(sweeps, name):
    sweep, done = finished(sweeps, name)
    output = done.stdout + done.stderr
    assert "Joblib.Parallel(" in output and "is launching 2 groups" in output, output[-3000:]
    jobs = job_dirs(sweep)
    assert sorted(jobs) == JOBS
    for job in jobs.values():
        assert read_json(job / "result.json")["status"] == "completed"
        assert [int(r["epoch"]) for r in read_csv(job / "epochs.csv")] == [0, 1, 2]
    assert output.count("[sweep] finished in") == 1 and "4 completed, 0 diverged, 0 failed" in output


@pytest.mark.parametrize("name", ["batched_local"])
def test_local_preset_runs_one_submitit_task_per_group(sweeps, name):
    sweep, done = finished(sweeps, name)
    jobs = job_dirs(sweep)
    assert sorted(jobs) == JOBS
    for job in jobs.values():
        assert read_json(job / "result.json")["status"] == "completed"
    # Two groups, two submitit tasks: each with its log and result pickle.
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2, logs
    assert all("Job completed successfully" in log.read_text() for log in logs)
    # The members of a group share their task's id (hydra.job.id).
    ids = {yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"] for job in jobs.values()}
    assert ids == {log.parent.name for log in logs}
    assert [p.name for p in (sweep / ".submitit").iterdir() if "%" in p.name] == []
    output = done.stdout + done.stderr
    assert "[sweep] 4/4 jobs done" in output and output.count("[sweep] finished in") == 1
    assert "4 completed, 0 diverged, 0 failed" in output


@pytest.mark.parametrize("name", [pytest.param("batched_failing", marks=pytest.mark.slow)])
def test_a_failing_member_fails_alone(sweeps, name):
    sweep, done = finished(sweeps, name, returncode=1)
    output = done.stdout + done.stderr
    jobs = job_dirs(sweep)
    assert sorted(jobs) == ["depth=2,epochs=1,seed=0", FAILED_MEMBER]
    good = jobs["depth=2,epochs=1,seed=0"]
    assert read_json(good / "result.json")["status"] == "completed" and not (good / "FAILED").exists()
    failed = jobs[FAILED_MEMBER]
    error = unreadable_checkpoint(failed, pickle.UnpicklingError("invalid load key, 'n'."))
    assert (failed / "FAILED").read_text().strip() == f"ConfigError: {error}"
    # The error is the failed job's own (a line about the whole group may name it in both logs).
    error_line = f"[ERROR] - {error}"
    assert error_line in (failed / "train.log").read_text() and error_line not in (good / "train.log").read_text()
    assert not (failed / "result.json").exists() and (failed / "checkpoint.pt").read_bytes() == DAMAGED
    assert "Error executing job with overrides: ['depth=2', 'epochs=1', 'seed=1', 'threads=1']" in output
    summary = f"1 completed, 0 diverged, 1 failed: {FAILED_MEMBER} (ConfigError: {error})"
    assert output.count("[sweep] finished in") == 1 and summary in output, output[-3000:]


def test_jobs_sharing_a_folder_never_share_a_group(caplog):
    """A basic sweep whose jobs share a folder is refused before it runs (tests/test_sweeps.py); a
    sweeper that draws its jobs while running (Optuna's, from categorical choices) can still draw
    one setting twice, with a runtime key (left out of folder names) differing. The second job then
    runs alone after the first, where it finds the first's result, never beside it as a member
    appending to the same files."""
    from hydra import compose, initialize_config_dir

    import initlab.sweeps  # noqa: F401  (registers the initlab_subdir resolver of hydra.sweep.subdir)
    from hydra_plugins.initlab_batched_launcher._core import plan_groups
    from initlab.config import register_configs

    register_configs()
    runs = [["depth=2", "threads=1"], ["depth=2", "threads=2"], ["depth=2", "seed=1", "threads=1"],
            ["depth=3", "threads=1"], ["depth=3", "threads=2"]]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        configs = [compose("config", overrides=run, return_hydra_config=True) for run in runs]
    for num, cfg in enumerate(configs):
        cfg.hydra.job.num = num
    with caplog.at_level("INFO"):
        assert plan_groups(configs, None) == [[0, 2], [1], [3], [4]]
    lines = [r.getMessage() for r in caplog.records]
    assert ("[batched] group 3: job #3 alone: the only other jobs with its model, data and schedule are itself "
            "again (#4, its folder)") in lines, lines  # was: no other job shares its model, data and schedule
    assert any(line.startswith("[batched] group 4: job #4 alone: its folder is job #3's") for line in lines), lines


def test_a_job_left_alone_by_max_members_is_logged_as_such(caplog):
    """Four groupable jobs under max_members=3: the fourth is alone because of the split, not
    because no job shares its model, data and schedule; a job of another depth is."""
    from hydra import compose, initialize_config_dir

    import initlab.sweeps  # noqa: F401  (registers the initlab_subdir resolver of hydra.sweep.subdir)
    from hydra_plugins.initlab_batched_launcher._core import plan_groups
    from initlab.config import register_configs

    register_configs()
    runs = [["depth=2", f"seed={seed}"] for seed in range(4)] + [["depth=3"]]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        configs = [compose("config", overrides=run, return_hydra_config=True) for run in runs]
    for num, cfg in enumerate(configs):
        cfg.hydra.job.num = num
    with caplog.at_level("INFO"):
        assert plan_groups(configs, 3) == [[0, 1, 2], [3], [4]]
    lines = [r.getMessage() for r in caplog.records]
    assert ("[batched] group 2: job #3 alone: left over where the 4 jobs that share its model, data and schedule "
            "split into groups of max_members=3") in lines, lines
    assert "[batched] group 3: job #4 alone: no other job shares its model, data and schedule" in lines, lines


def test_the_group_sizes_are_logged_in_the_order_the_groups_are_listed(caplog):
    """'sizes 2 1 1' was printed above groups listed as 1 job, 1 job, 2 jobs."""
    from hydra import compose, initialize_config_dir

    import initlab.sweeps  # noqa: F401  (registers the initlab_subdir resolver of hydra.sweep.subdir)
    from hydra_plugins.initlab_batched_launcher._core import plan_groups
    from initlab.config import register_configs

    register_configs()
    runs = [["depth=3"], ["depth=4"]] + [["depth=2", f"seed={seed}"] for seed in range(2)]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        configs = [compose("config", overrides=run, return_hydra_config=True) for run in runs]
    for num, cfg in enumerate(configs):
        cfg.hydra.job.num = num
    with caplog.at_level("INFO"):
        assert plan_groups(configs, 8) == [[0], [1], [2, 3]]
    lines = [r.getMessage() for r in caplog.records]
    assert "[batched] 4 jobs in 3 groups (max_members=8; sizes 1 1 2)" in lines, lines
    assert [line.split(":")[0] for line in lines if line.startswith("[batched] group")] == \
        [f"[batched] group {n}" for n in (1, 2, 3)]
    assert "[batched] group 3: 2 jobs #2 #3" in lines, lines


def test_max_members_below_one_is_refused_in_one_line():
    done = train_refused_in_process("-m", "hydra/launcher=batched", "hydra.launcher.max_members=0", "seed=0,1")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: hydra.launcher.max_members=0; valid: null (automatic from free memory) "
                                   "or an integer >= 1")
    for launcher in ("batched", "batched_parallel", "batched_slurm"):  # a typed refusal says the same range
        done = train_refused_in_process("-m", f"hydra/launcher={launcher}", "hydra.launcher.max_members=abc",
                                        "seed=0,1")
        assert done.stderr.strip().endswith("valid: an integer >= 1 or null"), done.describe()


def test_the_batched_presets_are_launcher_choices():
    """Each preset composes and passes the sweep's pre-check. batched_slurm's settings are also put
    to sbatch --test-only: where no cluster answers (a fresh machine without SLURM, or slurmctld
    down) its one refusal says so, and this test ran only where the CI's cluster was up."""
    from initlab.cli import check_command_line
    from test_slurm import UNAVAILABLE

    presets = sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("batched*.yaml"))
    assert presets == ["batched", "batched_local", "batched_parallel", "batched_slurm"]
    for preset in presets:
        refusal = check_command_line(["-m", f"hydra/launcher={preset}", "seed=0,1"], CONF)
        if preset == "batched_slurm" and UNAVAILABLE is not None:
            assert refusal is not None and refusal.startswith((
                "hydra/launcher=slurm submits with SLURM's sbatch, which is not on PATH here",
                "sbatch --test-only could not ask the cluster", "sbatch --test-only did not answer")), refusal
        else:
            assert refusal is None, (preset, refusal)


# ~0.1-0.5 s per epoch on one thread: long enough to kill the group after its first epoch rows.
SLOW = ["dataset=blobs", "dataset.n_train=20000", "dataset.n_test=500", "dataset.n_features=32", "depth=4",
        "model.width=128", "probe_size=256", "threads=1", "seed=0,1", "epochs=6"]


def checkpointed_rows(sweep: Path) -> int:
    """The most epoch rows of a member that has a checkpoint (rows are written just before it)."""
    counts = [0]
    for path in sweep.glob("*/epochs.csv"):
        try:
            if (path.parent / "checkpoint.pt").is_file():
                counts.append(len(read_csv(path)))
        except OSError:
            pass
    return max(counts)


@pytest.mark.slow
def test_kill_mid_group_then_rerun_loses_nothing(tmp_path):
    sweep, whole = tmp_path / "sweep", tmp_path / "whole"
    command = [sys.executable, "train.py", "-m", "hydra/launcher=batched", *SLOW, f"hydra.sweep.dir={sweep}"]
    with open(tmp_path / "killed.out", "w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=train_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while checkpointed_rows(sweep) < 2:  # epoch 0 and epoch 1 rows of some member
            assert proc.poll() is None, (tmp_path / "killed.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "no epoch rows within 180 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    assert not all((job / "result.json").exists() for job in jobs.values()), "the group ended before the kill"
    assert any((job / "checkpoint.pt").exists() for job in jobs.values())

    rerun = run_train("-m", "hydra/launcher=batched", *SLOW, f"hydra.sweep.dir={sweep}", timeout=300)
    assert rerun.returncode == 0, rerun.describe()
    assert "2 completed, 0 diverged, 0 failed" in rerun.stdout + rerun.stderr
    assert any("resuming from the checkpoint" in (job / "train.log").read_text() for job in jobs.values())
    reference = run_train("-m", *SLOW, f"hydra.sweep.dir={whole}", timeout=300)
    assert reference.returncode == 0, reference.describe()
    for name, job in job_dirs(sweep).items():
        assert not (job / "checkpoint.pt").exists()
        assert [int(r["epoch"]) for r in read_csv(job / "epochs.csv")] == list(range(7)), name
    assert_same_jobs(sweep, whole)


def test_a_member_that_ends_early_is_counted_while_the_others_train(tmp_path):
    """A member that diverges at epoch 1 writes its sweep ledger entry (and the progress line) then,
    not when its group ends: before the other member's last epoch. Was: every member's on_job_end
    after the whole group, so the count and the ETA lagged."""
    sweep = tmp_path / "sweep"
    done = run_train("-m", "hydra/launcher=batched", "optimizer.lr=0.01,1e5", "depth=2", "model.width=16",
                     "epochs=60", "threads=1", "probe_size=200", "jacobian_every=0", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.describe()
    ledger = {read_json(p)["job"]: p for p in sweep.glob(".progress/*/*.json") if p.name[0].isdigit()}
    diverged, completed = (next(sweep.glob(f"*,optimizer.lr={lr},*")) for lr in ("100000.0", "0.01"))
    assert read_json(diverged / "result.json")["status"] == "diverged"
    assert ledger[diverged.name].stat().st_mtime_ns < (completed / "result.json").stat().st_mtime_ns
    assert ledger[diverged.name].stat().st_mtime_ns < (completed / "epochs.csv").stat().st_mtime_ns
    output = done.stdout + done.stderr
    assert output.index("[sweep] 1/2") < output.index("[sweep] 2/2")
    # the console is the group's: each member's lines name it (four "diverged at epoch 1" lines named no job)
    assert [line.split("] - ", 1)[1] for line in output.splitlines() if "diverged at epoch" in line] == [
        f"{diverged.name}: diverged at epoch 1 (train_loss nan, test_loss nan): recording the run as diverged"]
    assert f"{completed.name}: epoch 60/60" in output
    assert f"{diverged.name}:" not in (diverged / "train.log").read_text()  # a member's own log needs no name


def test_the_launchers_count_in_words():
    """The log read "2 jobs in 1 groups" and "(1 tasks, one per group)"."""
    from hydra_plugins.initlab_batched_launcher._core import counted

    assert [counted(n, "group") for n in (0, 1, 2)] == ["0 groups", "1 group", "2 groups"]
    assert counted(1, "task") == "1 task" and counted(12, "job") == "12 jobs"
