"""Nothing lost, nothing done twice: killed jobs and sweeps resume; finished jobs are skipped."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import CONF, as_in_a_terminal, compose_config, run_job, run_train
from initlab.config import ConfigError, to_experiment
from initlab.train.job import Job
from train import INTERRUPTED

ROOT = Path(__file__).resolve().parents[1]
# Small blobs set: a few tenths of a second per epoch, long enough to kill a job mid-training.
SLOW_JOB = ["dataset=blobs", "dataset.n_train=6000", "dataset.n_test=500", "dataset.n_features=32",
            "depth=6", "model.width=64", "probe_size=256", "threads=1"]


def train(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
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
    """Killed and rerun through train.py; the uninterrupted reference runs in this process."""
    config = [*SLOW_JOB, "epochs=12"]
    run_job(compose_config(*config), tmp_path / "whole")

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


@pytest.mark.slow
def test_steps_distributions_and_the_loss_survive_a_kill(tmp_path):
    """kill -9 mid-run with steps.csv, distributions.csv and loss=mse: the resumed job's files
    equal an uninterrupted run's, byte for byte."""
    config = [*SLOW_JOB, "epochs=8", "loss=mse", "log_every_steps=3", "distributions_every=2"]
    run_job(compose_config(*config), tmp_path / "whole")
    job = tmp_path / "interrupted"
    proc = start_train(*config, f"hydra.run.dir={job}")
    kill_when(proc, lambda: checkpointed_epoch(job) >= 3)
    assert 3 <= checkpointed_epoch(job) < 8
    train(*config, f"hydra.run.dir={job}")
    assert "resuming from the checkpoint after epoch" in (job / "train.log").read_text()
    for resumed, whole in zip(read_csvs(job), read_csvs(tmp_path / "whole")):
        pd.testing.assert_frame_equal(resumed, whole, check_exact=True)
    for name in ("steps.csv", "distributions.csv"):
        assert (job / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    rows = json.loads((job / "result.json").read_text())["rows"]
    assert rows["steps.csv"] == len(pd.read_csv(job / "steps.csv"))
    assert rows["distributions.csv"] == len(pd.read_csv(job / "distributions.csv"))


@pytest.mark.slow
def test_killed_job_with_a_schedule_early_stopping_and_restarts_resumes_identically(tmp_path):
    """ReduceLROnPlateau's and early stopping's state (best value and weights, epochs without a
    gain), and the attempt, come back from the checkpoint: killed in attempt 0 and rerun, the rows
    and result equal an uninterrupted run's."""
    config = [*SLOW_JOB, "epochs=8", "dataset.val_size=500", "scheduler=reduce_on_plateau", "scheduler.patience=0",
              "scheduler.monitor=val_acc", "scheduler.factor=0.5", "early_stopping.enabled=true",
              "early_stopping.monitor=val_loss", "early_stopping.patience=4", "early_stopping.restarts=1",
              "early_stopping.restart_below=1e-9"]  # blobs reach val_acc 1: a loss never that low fails every attempt
    whole = run_job(compose_config(*config), tmp_path / "whole")

    job = tmp_path / "interrupted"
    proc = start_train(*config, f"hydra.run.dir={job}")
    kill_when(proc, lambda: checkpointed_epoch(job) >= 3)
    assert not (job / "result.json").exists()
    train(*config, f"hydra.run.dir={job}")
    resumed = json.loads((job / "result.json").read_text())
    for resumed_csv, whole_csv in zip(read_csvs(job), read_csvs(tmp_path / "whole")):
        pd.testing.assert_frame_equal(resumed_csv, whole_csv, check_exact=True)
    for key in ("best_epoch", "stopped_epoch", "final_attempt", "restored_best", "rows"):
        assert resumed[key] == whole[key], key
    assert {k: v for k, v in resumed["final"].items() if k != "epoch_time"} == \
        {k: v for k, v in whole["final"].items() if k != "epoch_time"}
    epochs = read_csvs(job)[0]
    assert whole["final_attempt"] == 1 and epochs["lr"].nunique() > 1  # both attempts ran, the lr moved


@pytest.mark.slow
def test_checkpoints_spaced_in_time_a_kill_before_the_first_starts_the_job_again(tmp_path):
    """checkpoint_every_s=3600: no checkpoint.pt after 3 epochs; killed there, the rerun starts
    from epoch 0 (nothing to resume) and its files equal an uninterrupted run's."""
    config = [*SLOW_JOB, "epochs=8", "checkpoint_every_s=3600"]
    run_job(compose_config(*config), tmp_path / "whole")
    job = tmp_path / "interrupted"
    proc = start_train(*config, f"hydra.run.dir={job}")

    def three_epochs() -> bool:
        try:
            return int(pd.read_csv(job / "epochs.csv")["epoch"].max()) >= 3
        except (OSError, ValueError, pd.errors.EmptyDataError):
            return False

    kill_when(proc, three_epochs)
    assert not (job / "checkpoint.pt").exists()
    train(*config, f"hydra.run.dir={job}")
    assert "resuming" not in (job / "train.log").read_text()
    for resumed, whole in zip(read_csvs(job), read_csvs(tmp_path / "whole")):
        pd.testing.assert_frame_equal(resumed, whole, check_exact=True)


EARLY_STOP = ["dataset.val_size=500", "early_stopping.enabled=true", "early_stopping.patience=1",
              "early_stopping.monitor=val_acc", "early_stopping.min_delta=1"]


@pytest.mark.parametrize("stop", [[], EARLY_STOP])
def test_spaced_checkpoints_still_keep_the_last_state(tmp_path, stop):
    """checkpoint=last with checkpoint_every_s=3600: checkpoint.pt is saved after the attempt's
    last epoch (the epochs-th, or early stopping's), so it holds the state the job ended with."""
    result = run_job(compose_config(*SLOW_JOB, "epochs=3", "checkpoint=last", "checkpoint_every_s=3600", *stop),
                     tmp_path)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == (result["stopped_epoch"] if stop else 3)
    assert not stop or result["stopped_epoch"] < 3


def test_a_job_folder_is_one_running_jobs(tmp_path):
    """While a job holds its folder (another process's flock, or an unreleased Job in this one),
    a second job there is refused in one line before it reads or writes anything; once the holder
    is killed or releases it, the job runs."""
    cfg = compose_config("dataset=digits", "depth=2", "model.width=8", "epochs=1", "probe_size=50", "threads=1")
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(job_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    refusal = (r"^.*/job is in use by another running job \(another sweep or run writing into this folder\): "
               r"wait for it to end or choose another hydra\.sweep\.dir / hydra\.run\.dir$")
    with pytest.raises(ConfigError, match=refusal):
        run_job(cfg, job_dir)
    assert list(job_dir.iterdir()) == []
    holder.kill()
    holder.wait()
    first = Job(cfg, job_dir)
    with pytest.raises(ConfigError, match="in use by another running job"):
        Job(cfg, job_dir)
    first.release()
    assert run_job(cfg, job_dir)["status"] == "completed"
    assert Job(cfg, job_dir).finished is not None and Job(cfg, job_dir).finished is not None  # a skip releases it


def test_a_run_its_folder_would_refuse_is_refused_before_hydra_writes_there(tmp_path):
    """train.py's pre-check (no Hydra run yet, so no .hydra/ rewritten): a run folder another
    process holds, and a finished folder of other settings; the same settings, or more epochs of a
    run that kept its checkpoint, pass. A sweep's jobs are checked the same way before launch."""
    from initlab.cli import check_single_run
    from initlab.sweeps import check_job_records

    job_dir = tmp_path / "run"
    args = ["dataset=digits", "depth=2", "model.width=8", "epochs=1", "probe_size=50", "threads=1",
            "checkpoint=last", f"hydra.run.dir={job_dir}"]
    run_job(compose_config(*args[:-1]), job_dir)
    assert check_single_run(args, CONF) is None
    assert check_single_run([*args, "epochs=2"], CONF) is None  # extends the finished run
    assert check_single_run([*args, "depth=3"], CONF) == (
        f"result.json in {job_dir} is of a run with other settings (depth 2 -> 3); resume=false starts the job "
        "afresh (replacing those records), or use another folder")
    assert check_single_run([*args, "depth=3", "resume=false"], CONF) is None
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(job_dir)], stdout=subprocess.PIPE, text=True)
    experiments = [to_experiment(compose_config(*args[:-1], depth)) for depth in ("depth=2", "depth=3")]
    try:
        assert holder.stdout.readline().strip() == "held"
        assert check_single_run(args, CONF).startswith(f"{job_dir} is in use by another running job")
        with pytest.raises(ConfigError, match=r"^job depth=2: .*/run is in use by another running job"):
            check_job_records(tmp_path, [["depth=2"]], ["run"], experiments[:1])  # a rerun while it runs
    finally:
        holder.kill()
        holder.wait()
    check_job_records(tmp_path, [["depth=2"], ["depth=3"]], ["run", "other"], experiments)
    with pytest.raises(ConfigError, match=r"^job depth=3: result\.json in .*/run is of a run with other settings "
                                          r"\(depth 2 -> 3\)"):
        check_job_records(tmp_path, [["depth=3"]], ["run"], experiments[1:])
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match=r"^job depth=2: hydra\.sweep\.subdir=.*/a_file/d2: cannot create it here"):
        check_job_records(tmp_path, [["depth=2"]], ["a_file/d2"], experiments[:1])
    (job_dir / "result.json").unlink()  # as if killed: the kept checkpoint is the unfinished run's
    assert check_single_run([*args, "depth=3"], CONF) == (
        f"checkpoint.pt in {job_dir} is of a run with other settings (depth 2 -> 3); resume=false starts the job "
        "afresh (replacing those records), or use another folder")
    assert check_single_run(args, CONF) is None


@pytest.mark.parametrize("finished", [False, True], ids=["empty", "finished"])
def test_a_sweep_into_a_folder_a_running_job_holds_is_refused_before_launch(tmp_path, finished):
    """A sweep one of whose folders another process holds (a rerun while that job still runs) is
    refused before Hydra writes anything there: not its .hydra/ (from which the running job's
    model is rebuilt), not a FAILED marker, not a log line."""
    sweep = tmp_path / "sweep"
    job_dir = sweep / "depth=2,epochs=1"
    job_dir.mkdir(parents=True)
    if finished:
        run_job(compose_config("depth=2", "epochs=1", "threads=1"), job_dir)
    before = sorted(p.name for p in job_dir.iterdir())
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(job_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = run_train("-m", "depth=2", "epochs=1", "threads=1", f"hydra.sweep.dir={sweep}")
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.describe()
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: job depth=2 epochs=1 threads=1: {job_dir} is in use by another running job"), done.describe()
    assert sorted(p.name for p in job_dir.iterdir()) == before


def attempt_checkpointed(job_dir: Path, attempt: int, epoch: int) -> bool:
    """A checkpoint exists and epochs.csv holds ``epoch`` of ``attempt`` (rows are appended before
    the epoch's checkpoint: the checkpoint may still be the previous epoch's)."""
    if not (job_dir / "checkpoint.pt").exists():
        return False
    try:
        rows = pd.read_csv(job_dir / "epochs.csv")
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return False
    return bool(((rows["attempt"] == attempt) & (rows["epoch"] >= epoch)).any())


@pytest.mark.slow
def test_a_job_killed_after_a_restart_reports_the_restarts_init(tmp_path):
    """LSUV's init_report in result.json is the final attempt's, as in an uninterrupted run, when
    the job is killed in attempt 1 and rerun (it was attempt 0's, recomputed from the run's seed)."""
    config = [*SLOW_JOB, "epochs=5", "init=lsuv", "dataset.val_size=500", "early_stopping.enabled=true",
              "early_stopping.monitor=val_loss", "early_stopping.patience=10", "early_stopping.restarts=1",
              "early_stopping.restart_below=1e-9"]  # blobs reach val_acc 1: a loss never that low fails every attempt
    whole = run_job(compose_config(*config), tmp_path / "whole")
    assert whole["final_attempt"] == 1

    job = tmp_path / "interrupted"
    proc = start_train(*config, f"hydra.run.dir={job}")
    kill_when(proc, lambda: attempt_checkpointed(job, 1, 2))  # epoch 2's row follows epoch 1's checkpoint
    assert not (job / "result.json").exists()
    train(*config, f"hydra.run.dir={job}")
    assert "(attempt 1)" in (job / "train.log").read_text()
    resumed = json.loads((job / "result.json").read_text())
    assert resumed["init_report"] == whole["init_report"]
    attempt0 = compose_config(*config, "early_stopping.restarts=0", "early_stopping.restart_below=null")
    assert resumed["init_report"] != run_job(attempt0, tmp_path / "attempt0")["init_report"]


@pytest.mark.slow
def test_killed_sweep_reruns_only_unfinished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", *SLOW_JOB, "epochs=6", "depth=2,3,4,5", f"hydra.sweep.dir={sweep}"]
    proc = start_train(*command)
    kill_when(proc, lambda: len(list(sweep.rglob("result.json"))) >= 1)
    finished = {p.parent: p.stat().st_mtime_ns for p in sweep.rglob("result.json")}
    assert 1 <= len(finished) < 4
    csv_mtimes = {d: (d / "layers.csv").stat().st_mtime_ns for d in finished}
    (sweep / ".sweep.json.k3x_9q0a.tmp").write_text("{")  # as if killed while writing sweep.json

    rerun = train(*command)
    results = sorted(sweep.rglob("result.json"))
    assert len(results) == 4
    assert all(json.loads(p.read_text())["status"] == "completed" for p in results)
    for job_dir, mtime in finished.items():
        assert (job_dir / "result.json").stat().st_mtime_ns == mtime, f"{job_dir.name} was rerun"
        assert (job_dir / "layers.csv").stat().st_mtime_ns == csv_mtimes[job_dir]
    assert "4/4 jobs done" in rerun.stderr + rerun.stdout
    assert not list(sweep.glob(".*.tmp"))
    assert "4 completed, 0 diverged, 0 failed" in rerun.stderr + rerun.stdout


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "parallel"])
def test_ctrl_c_stops_a_sweep_in_one_line_and_the_rerun_resumes(tmp_path, launcher):
    """Ctrl-C (SIGINT to the terminal's whole process group) printed a KeyboardInterrupt traceback,
    and, pressed twice, more from joblib's threads stopping its workers, around the sweep's summary.
    Now the summary and one line, exit 130; the rerun redoes only the unfinished jobs."""
    sweep = tmp_path / "sweep"
    command = ["-m", f"hydra/launcher={launcher}", *SLOW_JOB, "epochs=6", "depth=2,3,4,5", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "train.py", *command], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_in_a_terminal,
                            env={**os.environ, "INITLAB_N_JOBS": "2"})
    deadline = time.monotonic() + 120
    while not list(sweep.rglob("checkpoint.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be interrupted"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # pressed twice, as people do (and coreutils' timeout passes it on)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, err[-3000:]
    assert INTERRUPTED in err.splitlines()  # (joblib's killed workers leave multiprocessing's semaphore warning)
    assert "[sweep] stopped with" in out + err
    finished = {p.parent: p.stat().st_mtime_ns for p in sweep.rglob("result.json")}
    rerun = train(*command, env={"INITLAB_N_JOBS": "2"})
    assert len(list(sweep.rglob("result.json"))) == 4 and "4/4 jobs done" in rerun.stderr + rerun.stdout
    assert all((job / "result.json").stat().st_mtime_ns == mtime for job, mtime in finished.items())


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie no one has reaped yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["parallel", "batched_parallel"])
def test_kill_9_of_a_joblib_sweep_takes_its_workers_along(tmp_path, launcher):
    """kill -9 of the sweep's own process (not its group) left loky's workers training with no
    parent, holding their job folders: the rerun was refused ("in use by another running job"),
    and the workers then idled for minutes. Now they exit within a second or two, and the rerun
    redoes only the unfinished work."""
    sweep = tmp_path / "sweep"
    command = ["-m", f"hydra/launcher={launcher}", "hydra.launcher.max_members=2" if launcher != "parallel" else
               "threads=1", *SLOW_JOB, "epochs=40", "seed=0,1,2,3", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "train.py", *command], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "INITLAB_N_JOBS": "2"})
    deadline = time.monotonic() + 180
    while not list(sweep.rglob("checkpoint.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.05)
    workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                  text=True).stdout.split()]
    assert workers, "no worker processes"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers {[p for p in workers if _alive(p)]} outlived their sweep"
        time.sleep(0.1)
    rerun = train(*command, env={"INITLAB_N_JOBS": "2"})
    assert "4/4 jobs done" in rerun.stderr + rerun.stdout
    for job in sweep.glob("*/result.json"):
        epochs = pd.read_csv(job.parent / "epochs.csv")
        assert epochs["epoch"].tolist() == list(range(41)), job.parent.name


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.3, 1.5, 3.0])
def test_ctrl_c_while_train_py_starts_is_one_line_too(tmp_path, after):
    """In the first seconds (imports, the command-line check, Hydra composing) Ctrl-C printed the
    traceback of whatever was loading, and exited 1; now the same line and 130 as later on."""
    proc = subprocess.Popen([sys.executable, "train.py", "-m", "dataset=moons", "depth=2,3", "epochs=50", "threads=1",
                             f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_in_a_terminal)
    time.sleep(after)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out + err, err[-3000:]
    assert INTERRUPTED in err.splitlines()


@pytest.mark.parametrize("damage", ["bytes", "folder", "list", "empty"])
def test_a_damaged_checkpoint_fails_its_job_in_one_line_and_stays(tmp_path, damage):
    """A checkpoint.pt that is not one (garbage, a folder, another pickled object, empty) failed with
    torch's or Python's traceback (UnpicklingError, IsADirectoryError, 'list' has no 'get'): one
    line naming the file, which is left for the user to look at."""
    checkpoint = tmp_path / "checkpoint.pt"
    if damage == "folder":
        checkpoint.mkdir()
    elif damage == "list":
        torch.save([1, 2], checkpoint)
    else:
        checkpoint.write_bytes(b"not a checkpoint" if damage == "bytes" else b"")
    before = checkpoint.is_dir() or checkpoint.read_bytes()
    with pytest.raises(ConfigError, match=rf"^checkpoint\.pt in {re.escape(str(tmp_path))} cannot be read \(.+\); "
                                          r"delete it to start this job afresh \(resume=false would restart every job"):
        run_job(compose_config(*QUICK, "epochs=1"), tmp_path)
    assert (checkpoint.is_dir() or checkpoint.read_bytes()) == before


@pytest.mark.parametrize("name, resume", [("checkpoint.pt", False), ("result.json", True), ("epochs.csv", True)])
def test_a_folder_under_a_record_name_is_named_in_one_line(tmp_path, name, resume):
    """resume=false with a folder named checkpoint.pt (or any record's name, on a fresh start)
    failed with IsADirectoryError in the middle of starting; the folder is not the job's to delete."""
    (tmp_path / name).mkdir()
    with pytest.raises(ConfigError, match=rf"^{re.escape(name)} in {re.escape(str(tmp_path))} is a folder, where "
                                          rf"the job writes its own {re.escape(name)}: move it away, or use another"):
        run_job(compose_config(*QUICK, "epochs=1", f"resume={str(resume).lower()}"), tmp_path)
    assert (tmp_path / name).is_dir()


@pytest.mark.parametrize("keep", [pytest.param(False, marks=pytest.mark.slow), True])
def test_finished_job_is_skipped_unless_resume_false(tmp_path, keep, caplog):
    """keep=false through train.py, as a user runs it (the skip is written to the job's log);
    keep=true, where a kept checkpoint must not make the finished job resume, in this process."""
    args = ["epochs=1", "depth=2", f"checkpoint={'last' if keep else 'none'}"]

    def run(*extra: str) -> None:
        if keep:
            run_job(compose_config(*args, *extra), tmp_path)
        else:
            train(*args, *extra, f"hydra.run.dir={tmp_path}")

    caplog.set_level(logging.INFO)
    run()
    assert (tmp_path / "checkpoint.pt").exists() == keep
    result = tmp_path / "result.json"
    first = result.stat().st_mtime_ns

    caplog.clear()
    run()
    assert result.stat().st_mtime_ns == first
    log = caplog.text if keep else (tmp_path / "train.log").read_text()
    assert "job already finished, skipping" in log

    run("resume=false")
    assert result.stat().st_mtime_ns > first
    assert len(pd.read_csv(tmp_path / "epochs.csv")) == 2, "a forced rerun starts from scratch"


# --- resuming only into the same run ------------------------------------------------------------
QUICK = ["depth=2", "model.width=32", "probe_size=200", "threads=1", "device=cpu"]


def interrupted_job(tmp_path: Path, *settings: str) -> Path:
    """A job that checkpointed its last epoch and was stopped before writing result.json."""
    job = tmp_path / "job"
    run_job(compose_config(*QUICK, *settings, "checkpoint=last"), job)
    (job / "result.json").unlink()
    return job


def test_changed_settings_refuse_to_resume_naming_the_keys(tmp_path):
    """The issue's example: lr 0.01 for 2 epochs, interrupted, rerun with lr 0.5 and 4 epochs."""
    job = interrupted_job(tmp_path, "optimizer.lr=0.01", "epochs=2")
    before = {name: (job / name).read_bytes() for name in ("epochs.csv", "layers.csv", "checkpoint.pt")}
    refused = train(*QUICK, "optimizer.lr=0.5", "epochs=4", f"hydra.run.dir={job}", check=False)
    assert refused.returncode == 2, refused.stderr[-3000:]
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert "optimizer.lr 0.01 -> 0.5" in errors[0] and "resume=false" in errors[0]
    assert "epochs" not in errors[0].split("(")[1].split(")")[0], "extending epochs is allowed"
    assert {name: (job / name).read_bytes() for name in before} == before, "the records were touched"
    assert not (job / "result.json").exists()


def test_extending_epochs_resumes_and_equals_an_uninterrupted_run(tmp_path):
    job = interrupted_job(tmp_path, "optimizer.lr=0.01", "epochs=2")
    result = run_job(compose_config(*QUICK, "optimizer.lr=0.01", "epochs=4"), job)  # checkpoint may change
    assert result["status"] == "completed" and result["choices"]["epochs"] == 4
    assert result["choices"]["optimizer"]["lr"] == 0.01
    whole = tmp_path / "whole"
    run_job(compose_config(*QUICK, "optimizer.lr=0.01", "epochs=4"), whole)
    for resumed, uninterrupted in zip(read_csvs(job), read_csvs(whole)):
        pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)
    assert not (job / "checkpoint.pt").exists()


@pytest.mark.parametrize("first", [2, 0])
def test_a_finished_run_with_a_kept_checkpoint_extends_to_more_epochs(tmp_path, first):
    """checkpoint=last is what lets a finished run go on: epochs=2 -> 4 trains epochs 3-4 and
    equals an uninterrupted 4-epoch run (so does epochs=0, the init measured, -> 4); without a
    kept checkpoint the same request is refused."""
    job = tmp_path / "job"
    run_job(compose_config(*QUICK, f"epochs={first}", "checkpoint=last"), job)
    assert (job / "checkpoint.pt").is_file()
    result = run_job(compose_config(*QUICK, "epochs=4", "checkpoint=last"), job)
    assert result["status"] == "completed" and result["final"]["epoch"] == 4
    whole = tmp_path / "whole"
    run_job(compose_config(*QUICK, "epochs=4"), whole)
    for extended, uninterrupted in zip(read_csvs(job), read_csvs(whole)):
        pd.testing.assert_frame_equal(extended, uninterrupted, check_exact=True)
    with pytest.raises(ConfigError, match=r"finished run with epochs=4 that kept no checkpoint to go on from \(a run "
                                          r"kept with checkpoint=last or both continues to more epochs\)"):
        run_job(compose_config(*QUICK, "epochs=5"), whole)
    with pytest.raises(ConfigError, match=r"other settings \(epochs 4 -> 3\)"):
        run_job(compose_config(*QUICK, "epochs=3", "checkpoint=last"), job)


@pytest.mark.parametrize("finished", [True, False])
def test_a_cosine_schedule_spanning_the_epochs_is_not_continued_to_more(tmp_path, finished):
    """Cosine annealing with T_max null spans the run's epochs: a 2-epoch run's lr fell to eta_min
    at epoch 2, where a 4-epoch run's is at half. Continued to 4 it would climb back up and be
    recorded as a 4-epoch run it is not (analyze.py then dropped the real one as 'the same run'):
    refused, finished or interrupted, before anything is touched. With T_max set the schedule does
    not follow epochs, and the run extends as any other."""
    cosine = ["scheduler=cosine", "epochs=2"]
    job = tmp_path / "job"
    if finished:
        run_job(compose_config(*QUICK, *cosine, "checkpoint=last"), job)
    else:
        job = interrupted_job(tmp_path, *cosine)
    before = {p.name: p.read_bytes() for p in job.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=r"is of a run of 2 epochs whose cosine lr spans them \(scheduler\.T_max: "
                                          r"null\), so it cannot go on to epochs=4 as that run; resume=false"):
        run_job(compose_config(*QUICK, "scheduler=cosine", "epochs=4", "checkpoint=last"), job)
    assert {p.name: p.read_bytes() for p in job.iterdir() if p.is_file()} == before
    fixed = ["scheduler=cosine", "scheduler.T_max=4", "checkpoint=last"]
    run_job(compose_config(*QUICK, *fixed, "epochs=2"), tmp_path / "fixed")
    run_job(compose_config(*QUICK, *fixed, "epochs=4"), tmp_path / "fixed")
    run_job(compose_config(*QUICK, *fixed, "epochs=4"), tmp_path / "whole")
    for extended, uninterrupted in zip(read_csvs(tmp_path / "fixed"), read_csvs(tmp_path / "whole")):
        pd.testing.assert_frame_equal(extended, uninterrupted, check_exact=True)


def test_fewer_epochs_than_the_checkpoint_holds_is_refused(tmp_path):
    job = interrupted_job(tmp_path, "epochs=3")
    with pytest.raises(ConfigError, match=r"^epochs=2 but checkpoint\.pt in .* is after epoch 3; .*resume=false"):
        run_job(compose_config(*QUICK, "epochs=2"), job)


def test_a_checkpoint_without_recorded_settings_is_refused(tmp_path):
    job = interrupted_job(tmp_path, "epochs=1")
    state = torch.load(job / "checkpoint.pt", weights_only=False)
    del state["choices"]
    torch.save(state, job / "checkpoint.pt")
    with pytest.raises(ConfigError, match="records no settings to compare"):
        run_job(compose_config(*QUICK, "epochs=1"), job)


def test_a_record_of_an_older_initlab_counts_added_settings_as_their_default(tmp_path):
    """A result.json written before ``jacobian_every`` was recorded is the same run as one asked
    for with the default (0), and another run than one asked for with jacobian_every=1."""
    run_job(compose_config(*QUICK, "epochs=1"), tmp_path)
    result = json.loads((tmp_path / "result.json").read_text())
    del result["choices"]["jacobian_every"]
    (tmp_path / "result.json").write_text(json.dumps(result))
    before = (tmp_path / "result.json").read_bytes()
    assert run_job(compose_config(*QUICK, "epochs=1"), tmp_path)["status"] == "completed"
    assert (tmp_path / "result.json").read_bytes() == before
    with pytest.raises(ConfigError, match=r"jacobian_every 0 -> 1"):
        run_job(compose_config(*QUICK, "epochs=1", "jacobian_every=1"), tmp_path)


@pytest.mark.parametrize("monitor, mode, same", [("train_loss", "min", True), ("train_acc", "max", True),
                                                  ("train_acc", "min", False)])
def test_a_record_with_the_removed_plateau_mode_resumes_when_the_mode_followed_its_monitor(tmp_path, monitor, mode,
                                                                                         same):
    """scheduler.mode is gone (it follows the monitor): an older record with the mode that follows
    is the same run; mode min on an accuracy trained another schedule, so it is another run."""
    config = compose_config(*QUICK, "epochs=1", "scheduler=reduce_on_plateau", f"scheduler.monitor={monitor}")
    run_job(config, tmp_path)
    result = json.loads((tmp_path / "result.json").read_text())
    result["choices"]["scheduler"]["mode"] = mode
    (tmp_path / "result.json").write_text(json.dumps(result))
    if same:
        before = (tmp_path / "result.json").read_bytes()
        assert run_job(config, tmp_path)["status"] == "completed"
        assert (tmp_path / "result.json").read_bytes() == before
    else:
        with pytest.raises(ConfigError, match=r"scheduler\.mode min -> \(absent\)"):
            run_job(config, tmp_path)


def test_resnet18_is_18_layers_deep_whatever_depth_says_and_its_older_records_still_resume(tmp_path):
    """resnet18 ignores ``depth``: its records said the unused default (depth 5, so analyze.py drew
    'depth 5'), and depth=3,5 trained one run twice. Its depth is now 18; a record of an older
    initlab with depth 5 is the same run."""
    from initlab.resume import check_same_run, choices_of

    exp = to_experiment(compose_config("model=resnet18", "dataset=shapes", "depth=3"))
    assert exp.depth == 18
    current = choices_of(exp)
    check_same_run("result.json", tmp_path, {**current, "depth": 5}, current)
    mlp = choices_of(to_experiment(compose_config("depth=3")))
    with pytest.raises(ConfigError, match=r"depth 5 -> 3"):
        check_same_run("result.json", tmp_path, {**mlp, "depth": 5}, mlp)


@pytest.mark.parametrize("ending", ["diverged", "stopped"])
def test_a_run_that_ended_early_asked_for_more_epochs_is_finished_as_it_is(tmp_path, ending, caplog):
    """A diverged run (no checkpoint kept, by design) asked for epochs=3 -> 6 failed with "kept no
    checkpoint to go on from", in every launcher; the longer run would end at the same epoch, so
    its result stands (so for a run early stopping ended, checkpoint or not). Its records stay
    as they are; fewer epochs, or anything else changed, is still refused."""
    ends = (["optimizer.lr=100000"] if ending == "diverged" else
            ["dataset.val_size=100", "early_stopping.enabled=true", "early_stopping.patience=1",
             "early_stopping.min_delta=1", "checkpoint=none"])
    first = run_job(compose_config(*QUICK, *ends, "epochs=3"), tmp_path)
    epoch = first["diverged_epoch"] if ending == "diverged" else first["stopped_epoch"]
    assert epoch is not None and epoch < 3 and not (tmp_path / "checkpoint.pt").exists()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != "result.json"}
    recorded = json.loads((tmp_path / "result.json").read_text())
    with caplog.at_level(logging.INFO, logger="initlab.train.job"):
        again = run_job(compose_config(*QUICK, *ends, "epochs=6"), tmp_path)
    assert (again["status"], again["final"]["epoch"]) == (first["status"], first["final"]["epoch"])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != "result.json"} == before
    # result.json now records the run asked for (analyze.py split a sweep by epochs 2 and 4 otherwise)
    rewritten = json.loads((tmp_path / "result.json").read_text())
    assert json.dumps(rewritten, sort_keys=True) == json.dumps(
        {**recorded, "choices": {**recorded["choices"], "epochs": 6}}, sort_keys=True)
    word = "diverged" if ending == "diverged" else "stopped early"
    assert f"it {word} at epoch {epoch} of its 3; with epochs=6 it ends there too" in caplog.text
    # back to the 3 epochs first asked (refused as "epochs 6 -> 3" once the longer request was
    # recorded), or to the fewest that still reach the end: the same run, skipped
    for fewer in (3, epoch if ending == "diverged" else epoch + 1):
        skipped = run_job(compose_config(*QUICK, *ends, f"epochs={fewer}"), tmp_path)
        assert (skipped["status"], skipped["final"]["epoch"]) == (first["status"], first["final"]["epoch"])
        assert json.loads((tmp_path / "result.json").read_text())["choices"]["epochs"] == fewer
    with pytest.raises(ConfigError, match="is of a run with other settings"):
        run_job(compose_config(*QUICK, *ends, "seed=1"), tmp_path)
    # too few epochs to reach the end: refused as "other settings (epochs 2 -> 1)", naming the
    # epochs last recorded, not the epoch the run ended at
    short = epoch - 1 if ending == "diverged" else epoch
    reach = epoch if ending == "diverged" else epoch + 1
    with pytest.raises(ConfigError, match=rf"is of a run that {word} at epoch {epoch}: with epochs={short} it "
                                          rf"completes without that end, so it is not that run "
                                          rf"\(epochs >= {reach} is\)"):
        run_job(compose_config(*QUICK, *ends, f"epochs={short}"), tmp_path)


def test_a_run_that_restarted_is_not_taken_for_the_longer_run(tmp_path):
    """The user test's case: attempt 0 ran all 3 epochs below restart_below, so attempt 1 started
    and stopped early at epoch 1; asked for 8 epochs the run was skipped as "stopped early at epoch 1",
    though a fresh 8-epoch run never restarted (attempt 0 went on and stopped at epoch 6). Any run
    that restarted is refused as before (here, where attempt 0 stopped early too, conservatively)."""
    settings = ["dataset.val_size=100", "early_stopping.enabled=true", "early_stopping.monitor=val_acc",
                "early_stopping.patience=1", "early_stopping.min_delta=1", "early_stopping.restarts=1",
                "early_stopping.restart_below=1.0"]  # every attempt stops at epoch 1 and fails: one restart
    first = run_job(compose_config(*QUICK, *settings, "epochs=3"), tmp_path)
    assert (first["final_attempt"], first["stopped_epoch"]) == (1, 1)
    # the refusal said "kept no checkpoint (a run kept with checkpoint=last or both continues ...)":
    # advice that cannot help (a user test had checkpoint=last); it now says why, counting attempts from 0 as
    # the log, the attempt column and final_attempt do (it said "in attempt 2" of final_attempt 1)
    for epochs in (8, 2):
        with pytest.raises(ConfigError, match=rf"is of a run that stopped early at epoch 1 in attempt 1 \(counted "
                                              rf"from 0, as the log and the attempt column; early_stopping.restarts\): "
                                              rf"with epochs={epochs} its attempts could end otherwise \(attempt 0 "
                                              rf"need not restart\), so it is not that run; resume=false"):
            run_job(compose_config(*QUICK, *settings, f"epochs={epochs}", "checkpoint=last"), tmp_path)


@pytest.mark.parametrize("change", ["seed=1", "epochs=2", "jacobian_every=1"])
def test_a_finished_job_asked_for_with_other_settings_is_refused_not_skipped(tmp_path, change):
    """Skipping it would keep the old result under the new command; refusing says so."""
    run_job(compose_config(*QUICK, "epochs=1"), tmp_path)
    result = (tmp_path / "result.json").read_bytes()
    key = change.split("=")[0]
    refusal = (r"finished run with epochs=1 that kept no checkpoint to go on from \(a run kept with checkpoint=last or "
               r"both continues to more epochs\); resume=false" if key == "epochs"  # was "other settings"
               else rf"other settings \({re.escape(key)} .*resume=false")
    with pytest.raises(ConfigError, match=rf"^result\.json in .* {refusal}"):
        run_job(compose_config(*QUICK, "epochs=1", change), tmp_path)
    assert (tmp_path / "result.json").read_bytes() == result
    # what does not change the run may differ: the job is skipped
    assert run_job(compose_config(*QUICK, "epochs=1", "threads=2", "checkpoint=last"), tmp_path)["status"]
    assert (tmp_path / "result.json").read_bytes() == result
    # resume=false starts afresh with the new settings and leaves nothing of the old run
    fresh = run_job(compose_config(*QUICK, "epochs=1", change, "resume=false"), tmp_path)
    assert fresh["choices"] == json.loads((tmp_path / "result.json").read_text())["choices"]


def test_a_resumed_job_removes_what_an_interrupted_write_left(tmp_path, caplog):
    """The temporary of a checkpoint write killed before its rename (the name CI found) is gone
    once the job resumes: the finished folder holds what an uninterrupted run's holds."""
    job = interrupted_job(tmp_path, "epochs=2")
    (job / ".checkpoint.pt._b9xm4ae.tmp").write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.INFO, logger="initlab"):
        run_job(compose_config(*QUICK, "epochs=2", "checkpoint=last"), job)
    whole = tmp_path / "whole"
    run_job(compose_config(*QUICK, "epochs=2", "checkpoint=last"), whole)
    assert sorted(p.name for p in job.iterdir()) == sorted(p.name for p in whole.iterdir())
    assert "removed .checkpoint.pt._b9xm4ae.tmp, left by an interrupted write" in caplog.text


def test_a_checkpoint_left_by_a_kill_after_result_json_is_removed_a_kept_one_stays(tmp_path):
    """finish() writes result.json, then removes checkpoint.pt unless kept: a kill between the two
    leaves both. The same job asked for again is skipped and the leftover goes (its result says
    the run kept none); a run that kept its checkpoint (checkpoint=last) keeps it when asked for
    again with the default checkpoint=none."""
    unkept, kept = tmp_path / "unkept", tmp_path / "kept"
    assert run_job(compose_config(*QUICK, "epochs=2"), unkept)["checkpoint"] == "none"
    assert run_job(compose_config(*QUICK, "epochs=2", "checkpoint=last"), kept)["checkpoint"] == "last"
    clean = sorted(p.name for p in unkept.iterdir())
    (unkept / "checkpoint.pt").write_bytes((kept / "checkpoint.pt").read_bytes())  # the same run's last state
    result = (unkept / "result.json").read_bytes()
    for job in (unkept, kept):
        run_job(compose_config(*QUICK, "epochs=2"), job)
    assert sorted(p.name for p in unkept.iterdir()) == clean and "checkpoint.pt" not in clean
    assert (unkept / "result.json").read_bytes() == result, "a finished job is skipped, not rerun"
    assert (kept / "checkpoint.pt").is_file()


def test_a_fresh_start_removes_the_previous_runs_files(tmp_path):
    """resume=false in a used folder: a diverged-at-init rerun has no Jacobian rows, and the old
    jacobian.csv must not stay beside its records."""
    run_job(compose_config(*QUICK, "epochs=1", "checkpoint=last"), tmp_path)
    assert (tmp_path / "jacobian.csv").exists()
    result = run_job(compose_config(*QUICK, "epochs=1", "init=normal", "init.std=1e30", "resume=false"), tmp_path)
    assert result["status"] == "diverged"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".csv", ".json", ".pt")) == [
        "epochs.csv", "layers.csv", "result.json"]


def test_a_checkpoint_from_another_device_resumes_with_a_reseeded_batch_order(tmp_path):
    """device may change between runs: a CUDA generator's state (seed and offset, 16 bytes) cannot
    drive the CPU generator, so the batch order is reseeded and the job completes."""
    job = interrupted_job(tmp_path, "epochs=1")
    state = torch.load(job / "checkpoint.pt", weights_only=False)
    state["device_type"], state["generator"] = "cuda", torch.zeros(16, dtype=torch.uint8)
    torch.save(state, job / "checkpoint.pt")
    result = run_job(compose_config(*QUICK, "epochs=2"), job)
    assert result["status"] == "completed" and result["final"]["epoch"] == 2
    assert [r for r in pd.read_csv(job / "epochs.csv")["epoch"]] == [0, 1, 2]


@pytest.mark.slow
def test_analysis_reads_the_finished_runs_settings_after_a_refused_rerun(tmp_path):
    """A rerun of other settings into a finished folder is refused before Hydra starts, so the
    folder's .hydra/ (from whose overrides initlab.train.saved rebuilds the model) stays the
    finished run's. Where Hydra does rewrite it first (HYDRA_FULL_ERROR=1 skips the pre-check:
    the job refuses), the analysis still describes the run the records are of (from result.json)."""
    from initlab.analysis import tables as analysis

    args = ["epochs=1", "depth=2", "threads=1", f"hydra.run.dir={tmp_path}"]
    train(*args)
    kept = {p.name: p.read_bytes() for p in (tmp_path / ".hydra").iterdir()}
    refused = train(*args, "init=xavier_normal", "optimizer.lr=0.5", check=False)
    assert refused.returncode == 2 and "other settings" in refused.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / ".hydra").iterdir()} == kept
    refused = train(*args, "init=xavier_normal", "optimizer.lr=0.5", check=False, env={"HYDRA_FULL_ERROR": "1"})
    assert refused.returncode != 0 and "other settings" in refused.stderr
    assert "xavier_normal" in (tmp_path / ".hydra" / "config.yaml").read_text()
    runs = analysis.load([tmp_path]).runs
    assert runs.loc[0, "init"] == "he_normal"
    assert runs.loc[0, "optimizer.lr"] == pytest.approx(0.01)
