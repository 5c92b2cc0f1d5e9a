"""Sweeps through a real SLURM cluster (conf/hydra/launcher/slurm.yaml), including requeue on preemption.

Needs a reachable cluster with accounting: ``eval "$(scripts/slurm-local.sh start)"`` (as root; .ci/run
does it). Without one every test here skips with the reason; nothing here installs or starts anything.

The requeue test drives the protocol the preset relies on: SLURM signals a running task (USR2, as
``--signal=USR2@<signal_delay_s>`` asks before a timeout, and as on preemption), submitit's handler calls
``BaseSubmititLauncher.checkpoint`` (a DelayedSubmission of the same job), runs ``scontrol requeue`` and
exits; the requeued task runs the job again and ``initlab.train.job.run`` continues from checkpoint.pt.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
import pytest

from conftest import ROOT, read_csv, read_json, run_train, train_env


def cluster_unavailable() -> Optional[str]:
    """Why the SLURM tests cannot run here, or None when a cluster answers."""
    start = 'start one with: eval "$(scripts/slurm-local.sh start)" (as root; .ci/run does this)'
    can_start = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if not can_start:
        start = "and scripts/slurm-local.sh cannot start one here (it needs root and apt-get)"
    tools = ("sinfo", "sbatch", "sacct", "scancel", "scontrol", "squeue")
    if missing := [t for t in tools if shutil.which(t) is None]:
        return f"SLURM client tools not installed ({', '.join(missing)}); {start}"
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        return f"SLURM_CONF is not set, so no cluster to submit to; {start}"
    if not Path(conf).is_file():
        return f"SLURM_CONF={conf} does not exist; {start}"
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
        if sinfo.returncode != 0:
            last = (sinfo.stderr.strip().splitlines() or ["?"])[-1]
            return f"sinfo failed ({last}): slurmctld not reachable with SLURM_CONF={conf}; {start}"
        states = set(sinfo.stdout.split())
        if not states & {"idle", "mixed", "allocated", "completing"}:
            return f"no usable SLURM node (sinfo node states: {sorted(states) or 'none'})"
        # Without accounting submitit cannot tell a task that died from one still queued.
        sacct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True, timeout=20)
        if sacct.returncode != 0:
            return f"SLURM accounting not reachable (sacct: {sacct.stderr.strip()[-200:]})"
    except subprocess.TimeoutExpired as err:
        return f"{err.cmd[0]} did not answer within {err.timeout:.0f} s (slurmctld/slurmdbd down?)"
    return None


UNAVAILABLE = cluster_unavailable()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))]

# Fits the local one-node cluster (2 cores, ~21 GB declared): tasks run two at a time on 1 core each.
SMALL_TASKS = ["hydra.launcher.timeout_min=5", "hydra.launcher.mem_gb=1"]
# ~0.5 s per epoch on one thread (more on a busy machine): a 20-epoch job trains for ~10 s after ~8 s of
# start-up, long enough to
# signal it mid-training. threads=1 in every run: the CSVs are bitwise equal only at the same thread count
# (and under SLURM with cpus_per_task=1 the job would pick 1 thread anyway).
SLOW_JOB = ["dataset=blobs", "dataset.n_train=30000", "dataset.n_test=500", "dataset.n_features=32", "depth=6",
            "model.width=128", "probe_size=256", "threads=1"]
SLOW_EPOCHS = 20
JOB_ID = re.compile(r"^\d+(_\d+)?$")


def slurm(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{' '.join(args)} -> {proc.returncode}: {proc.stderr}"
    return proc.stdout


def wait_until(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.2,
               alive: Optional[subprocess.Popen] = None) -> object:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"the sweep ended (exit {alive.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def sacct_states(job_id: str, duplicates: bool = False) -> dict[str, list[str]]:
    """{job or array task id: [state of each run]} from accounting (-D: requeued runs too)."""
    out = slurm("sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,State", *(["-D"] if duplicates else []))
    states: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.strip():
            task, state = line.split("|")[:2]
            states.setdefault(task, []).append(state.split()[0])  # "CANCELLED by 0" -> CANCELLED
    return states


def submitit_job_ids(sweep: Path) -> list[str]:
    """SLURM ids of the submitted tasks, from the submitit folders (<sweep>/.submitit/<id>/)."""
    folder = sweep / ".submitit"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and JOB_ID.match(p.name) and any(p.glob("*_submitted.pkl")))


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.glob("*/.hydra"))


def test_sweep_runs_as_a_job_array_and_is_accounted(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_train("-m", "hydra/launcher=slurm", "depth=2,3", "activation=relu,tanh", "epochs=2", *SMALL_TASKS,
                     f"hydra.sweep.dir={sweep}", timeout=240)
    assert done.returncode == 0, done.describe()

    jobs = job_dirs(sweep)
    assert len(jobs) == 4, [p.name for p in jobs]
    for job in jobs:
        for name in ("epochs.csv", "layers.csv", "result.json"):
            assert (job / name).is_file(), f"{job.name}: no {name}"
        result = read_json(job / "result.json")
        assert result["status"] == "completed", job.name
        assert [r["epoch"] for r in read_csv(job / "epochs.csv")] == ["0", "1", "2"]
        # cpus_per_task=1: the job takes one torch thread (SLURM's task/affinity pins it to one core).
        assert result["device"].endswith(", 1 threads)"), result["device"]
    # The tasks run on the cluster, yet the launching process shows the progress and one summary.
    output = done.stdout + done.stderr
    assert "[sweep] 4/4 jobs done" in output and output.count("[sweep] finished in") == 1
    assert "4 completed, 0 diverged, 0 failed" in output
    assert [p.name for p in (sweep / ".submitit").iterdir() if "%" in p.name] == []

    # One array of four tasks, each with its submitit log and result pickle.
    tasks = submitit_job_ids(sweep)
    assert len(tasks) == 4 and all("_" in t for t in tasks), tasks
    array_id = tasks[0].split("_")[0]
    assert sorted(t.split("_")[1] for t in tasks) == ["0", "1", "2", "3"], tasks
    for task in tasks:
        log = (sweep / ".submitit" / task / f"{task}_0_log.out").read_text()
        assert "Job completed successfully" in log, log[-2000:]

    # Accounting lags the launcher by a moment: retry.
    expected = {task: ["COMPLETED"] for task in tasks}
    try:
        wait_until(lambda: sacct_states(array_id) == expected, 20, "sacct to show the 4 tasks COMPLETED", poll=0.5)
    finally:
        print("sacct:", sacct_states(array_id))


def checkpointed_epoch(job: Path) -> int:
    """The last epoch recorded once checkpoint.pt exists (-1 before)."""
    if not (job / "checkpoint.pt").is_file():
        return -1
    try:
        return int(pd.read_csv(job / "epochs.csv")["epoch"].max())
    except (OSError, ValueError, KeyError, pd.errors.EmptyDataError):
        return -1


def read_csvs(job: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """epochs.csv without its wall-clock column, and layers.csv."""
    return pd.read_csv(job / "epochs.csv").drop(columns="epoch_time"), pd.read_csv(job / "layers.csv")


def test_preempted_task_requeues_itself_and_continues_from_its_checkpoint(tmp_path):
    """USR2 to a running task (preemption, as submitit's own ``SlurmJob._interrupt`` sends it: TERM then
    USR2): submitit checkpoints the launcher call, ``scontrol requeue``s the task and exits; the new run
    resumes after the last finished epoch and ends with the same records as an uninterrupted run.

    The preset's timeout_min=60 is kept: submitit counts a signal as a *timeout* only after
    min(80 %, limit - 10 min) of the limit has run (always true for limits under 10 min), else as a
    preemption, which does not use up ``max_num_timeout`` (3): the log must say "3 remaining timeouts".
    """
    sweep, whole = tmp_path / "sweep", tmp_path / "whole"
    config = [*SLOW_JOB, f"epochs={SLOW_EPOCHS}"]
    env = train_env()
    with open(tmp_path / "sweep.out", "w") as out:
        launcher = subprocess.Popen([sys.executable, "train.py", "-m", "hydra/launcher=slurm",
                                     "hydra.launcher.mem_gb=1", *config, f"hydra.sweep.dir={sweep}"],
                                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    # The uninterrupted reference, alongside (the SLURM task holds one of the two cores).
    reference = subprocess.Popen([sys.executable, "train.py", *config, f"hydra.run.dir={whole}"], cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    job_id = None
    try:
        job = wait_until(lambda: next(iter(job_dirs(sweep)), None), 90, "the job folder", alive=launcher)
        wait_until(lambda: checkpointed_epoch(job) >= 3, 120, "a checkpoint after epoch 3", alive=launcher)
        ids = submitit_job_ids(sweep)
        assert len(ids) == 1, ids
        job_id = ids[0]
        stopped_at = checkpointed_epoch(job)
        assert stopped_at < SLOW_EPOCHS - 3, "the job runs too fast to be interrupted mid-training"
        assert slurm("squeue", "-h", "-j", job_id, "-o", "%T").strip() == "RUNNING"
        t_signal = time.monotonic()
        slurm("scancel", "--signal=TERM", job_id)  # to the job step's tasks (not the batch shell)
        slurm("scancel", "--signal=USR2", job_id)

        # Requeued: PENDING again. SLURM holds a requeued batch job for cred_expire + 1 s (121 s by
        # default, reason BeginTime). Shorten the hold to 3 s, not to 0: slurmd refuses (and the job then
        # FAILs) a relaunch of the job id within the second its old credential was revoked.
        def requeued() -> str:
            info = dict(re.findall(r"(\w+)=(\S*)", slurm("scontrol", "show", "job", "-o", job_id)))
            restarted = int(info.get("Restarts", 0)) >= 1 and info.get("JobState") in ("PENDING", "RUNNING")
            return restarted and f"{info['JobState']} (reason {info.get('Reason')}, restarts {info['Restarts']})"
        state = wait_until(requeued, 30, f"job {job_id} to be requeued", alive=launcher)
        print(f"job {job_id} after the signal: {state} (+{time.monotonic() - t_signal:.1f} s)")
        if state.startswith("PENDING"):
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now+3"], timeout=30)

        assert launcher.wait(timeout=180) == 0, (tmp_path / "sweep.out").read_text()[-3000:]
        t_done = time.monotonic()
        _, err = reference.communicate(timeout=120)
        assert reference.returncode == 0, err[-3000:]
    finally:
        for proc in (launcher, reference):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if job_id is not None and launcher.returncode != 0:
            subprocess.run(["scancel", job_id], capture_output=True)
    print(f"requeued run finished {t_done - t_signal:.1f} s after the signal")

    # The preset asked SLURM for the signal before the time limit: USR2, signal_delay_s (120) early.
    batch = (sweep / ".submitit" / job_id / f"{job_id}_submission.sh").read_text()
    assert "#SBATCH --signal=USR2@120" in batch and "#SBATCH --time=60" in batch, batch

    # submitit's side: SIGTERM ignored, USR2 handled as a preemption, checkpoint + requeue, clean exit.
    sublog = (sweep / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
    for line in ("Bypassing signal SIGTERM", "Caught signal SIGUSR2", "this job is preempted",
                 "Calling checkpoint method", f"Requeued job {job_id} (3 remaining timeouts)",
                 "Exiting gracefully after preemption/timeout", "Job completed successfully"):
        assert line in sublog, f"{line!r} not in the submitit log:\n{sublog[-3000:]}"
    assert sublog.count("Starting with JobEnvironment") == 2, "the task should have started twice"

    # The project's side: the second run continued from the checkpoint, nothing lost or done twice.
    log = (job / "train.log").read_text()
    resumed = re.findall(r"resuming from the checkpoint after epoch (\d+)", log)
    assert len(resumed) == 1, log[-3000:]
    assert stopped_at <= int(resumed[0]) < SLOW_EPOCHS
    assert log.index("Caught signal SIGUSR2") < log.index("resuming from the checkpoint")
    result = read_json(job / "result.json")
    assert result["status"] == "completed"
    assert not (job / "checkpoint.pt").exists()
    epochs = pd.read_csv(job / "epochs.csv")
    assert epochs["epoch"].tolist() == list(range(SLOW_EPOCHS + 1))
    for resumed_csv, whole_csv in zip(read_csvs(job), read_csvs(whole)):
        pd.testing.assert_frame_equal(resumed_csv, whole_csv, check_exact=True)

    # Accounting: the first run REQUEUED, the second COMPLETED.
    try:
        wait_until(lambda: sacct_states(job_id, duplicates=True).get(job_id) == ["REQUEUED", "COMPLETED"], 20,
                   "sacct -D to show REQUEUED then COMPLETED", poll=0.5)
    finally:
        print("sacct -D:", sacct_states(job_id, duplicates=True))


def test_batched_sweep_runs_one_array_task_per_group(tmp_path):
    """hydra/launcher=batched_slurm: the seeds of each depth form a group, each group one array task."""
    sweep = tmp_path / "sweep"
    done = run_train("-m", "hydra/launcher=batched_slurm", "depth=2,3", "seed=0,1", "epochs=2", *SMALL_TASKS,
                     f"hydra.sweep.dir={sweep}", timeout=240)
    assert done.returncode == 0, done.describe()
    output = done.stdout + done.stderr
    assert "[batched] 4 jobs in 2 groups" in output, output[-3000:]
    jobs = job_dirs(sweep)
    assert len(jobs) == 4, [p.name for p in jobs]
    for job in jobs:
        assert read_json(job / "result.json")["status"] == "completed", job.name
        assert [r["epoch"] for r in read_csv(job / "epochs.csv")] == ["0", "1", "2"]
    assert "[sweep] 4/4 jobs done" in output and output.count("[sweep] finished in") == 1
    tasks = submitit_job_ids(sweep)
    assert len(tasks) == 2 and all("_" in t for t in tasks), tasks
    for task in tasks:
        log = (sweep / ".submitit" / task / f"{task}_0_log.out").read_text()
        assert "Job completed successfully" in log, log[-2000:]


def _node_cpus() -> int:
    return max(int(n) for n in slurm("sinfo", "-h", "-o", "%c").split())


@pytest.mark.parametrize("setting, reason", [
    ("hydra.launcher.partition=nosuch", "Invalid partition name specified"),
    ("hydra.launcher.cpus_per_task={too_many}", "Requested node configuration is not available"),
    ("hydra.launcher.mem_gb=100000", "Requested node configuration is not available"),
    ("hydra.launcher.constraint=nosuchfeat", "Invalid feature specification"),
    ("+hydra.launcher.additional_parameters={foo: bar}", "unrecognized option '--foo=bar'"),
])
def test_settings_the_cluster_can_never_run_are_refused_before_the_sweep(tmp_path, setting, reason):
    """An unknown partition or more memory than any node has ended in submitit's 40-line traceback
    beside an empty sweep folder; more CPUs than any node has left the array pending for ever in
    silence. sbatch --test-only answers before the sweep starts: one line, exit 2, no folder."""
    setting = setting.replace("{too_many}", str(_node_cpus() + 1))
    sweep = tmp_path / "sweep"
    done = run_train("-m", "hydra/launcher=slurm", "depth=2,3", "epochs=1", setting, f"hydra.sweep.dir={sweep}",
                     timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip()
    assert line.startswith("error: hydra.launcher (") and "\n" not in line, line
    assert setting.split(".")[-1].replace(": ", "': '").replace("{", "{'").replace("}", "'}") in line  # named
    assert line.endswith(f"SLURM would never run such a task (sbatch --test-only: {reason})"), line
    assert not sweep.exists()
    assert squeue_jobs_named(sweep) == []


def squeue_jobs_named(sweep: Path) -> list[str]:
    """Queued or running jobs whose output goes under ``sweep`` (none may be left by a refused sweep)."""
    return [line for line in slurm("squeue", "-h", "-o", "%o %Z").splitlines() if str(sweep) in line]
