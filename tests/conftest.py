"""Shared fixtures: Hydra composition of the real conf/ tree, and train.py as a subprocess.

Nothing here mocks torch, Hydra or the filesystem: configs are composed from conf/ with Hydra's
compose API, jobs run in pytest's tmp_path, and CLI tests run ``python train.py`` for real.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import os
import runpy
import signal
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("initlab") is None:  # `pytest` (not `python -m pytest`) from elsewhere
    sys.path.insert(0, str(ROOT))

from initlab.config import register_configs  # noqa: E402
CONF = ROOT / "conf"
GROUPS = ("activation", "init", "dataset", "optimizer", "model", "logger", "scheduler")
# every top-level key of the config, sorted, as the one-line errors list them
TOP_KEYS = ("activation, batch_size, checkpoint, checkpoint_every_s, dataset, depth, device, distributions_every, early_stopping, epochs, init, "
           "jacobian_every, log_every_steps, logger, loss, model, objective, optimizer, probe_size, resume, scheduler, seed, "
           "threads")


@pytest.fixture(autouse=True)
def matplotlib_settings():
    """Every test starts from the same matplotlib settings and leaves them as it found them: a
    theme set in one test never changes another's fonts (an order-dependent failure in CI)."""
    import matplotlib

    with matplotlib.rc_context():
        yield


def as_in_a_terminal() -> None:
    """Ctrl-C's default action in a child process, as in a terminal's foreground job (its
    ``preexec_fn``): a suite started in the background (``nohup ... &``) passes SIGINT ignored on,
    and Python keeps an inherited ignore."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def group_choices(group: str) -> list[str]:
    """Every option of a config group, read from conf/<group>/*.yaml (new files are picked up)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_config(*overrides: str) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def compose_cfg() -> Callable[..., DictConfig]:
    """``compose_cfg("depth=3", "activation=tanh")`` -> the composed DictConfig."""
    return compose_config


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_csv_header(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# --- train.py as a subprocess -------------------------------------------------------------------
@dataclass
class Completed:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"train.py {' '.join(self.args)} -> exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}"
                f"\n--- stderr\n{self.stderr[-3000:]}")


DAMAGED = b"not a checkpoint"  # a damaged checkpoint.pt, in the failing-job tests


def damage_checkpoint(job: Path) -> None:
    """Before its sweep runs, a job folder holding a checkpoint.pt that torch cannot load: the job
    fails at run time, past the sweep's pre-check (which leaves checkpoints to the jobs)."""
    job.mkdir(parents=True)
    (job / "checkpoint.pt").write_bytes(DAMAGED)


def train_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)  # the tests check the messages users see by default
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_train(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> Completed:
    """``python train.py ARGS`` from the repository root; callers pass hydra.run.dir/sweep.dir."""
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env or train_env())
    return Completed(list(args), proc.returncode, proc.stdout, proc.stderr)


def train_refused_in_process(*args: str) -> Completed:
    """``python train.py ARGS`` for a command line that train.py's one-line pre-check refuses, run
    as ``__main__`` in this process: the same code and output as ``run_train`` without the seconds
    of interpreter and torch start-up. Bad input found only once Hydra runs the job (device, data
    files) needs ``run_train``; one real process per refusal path keeps the process itself tested."""
    from initlab.cli import check_command_line

    assert check_command_line(list(args), CONF) is not None, f"train.py {' '.join(args)} passes the pre-check"
    stdout, stderr = io.StringIO(), io.StringIO()
    argv, full_error = sys.argv, os.environ.pop("HYDRA_FULL_ERROR", None)
    sys.argv = [str(ROOT / "train.py"), *args]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
        if full_error is not None:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    return Completed(list(args), code, stdout.getvalue(), stderr.getvalue())


def argparse_refusal(main: Callable[[list[str]], None], argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """The message ``main(argv)`` refuses ``argv`` with through argparse's parser.error: exit status 2
    and, after the usage, one line "PROG: error: MESSAGE" (PROG is pytest's own name here)."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert ": error: " in last, last
    return last.split(": error: ", 1)[1]


@pytest.fixture(scope="session")
def train_pool():
    """Two concurrent ``train.py`` processes at most (the machine has two cores).

    Most of a CLI call is interpreter and torch start-up, so tests submit their calls up front and
    collect the results; ``submit(*args)`` returns a Future of a ``Completed``.
    """
    pool = ThreadPoolExecutor(max_workers=2)

    def submit(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> Future:
        return pool.submit(run_train, *args, timeout=timeout, env=env)

    try:
        yield submit
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # calls no test waited for are not started


def run_job(cfg: DictConfig, job_dir: Path) -> dict:
    """``initlab.train.job.run`` in this process, restoring torch's thread count afterwards."""
    import torch

    from initlab.train.job import run

    threads = torch.get_num_threads()
    try:
        return run(cfg, Path(job_dir))
    finally:
        torch.set_num_threads(threads)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slurm: needs a running SLURM cluster with accounting (SLURM_CONF; see "
        "scripts/slurm-local.sh); skipped with a reason otherwise")
    config.addinivalue_line(
        "markers", "slow: takes more than a few seconds; `make test` (and CI) run them, "
        "`make test-fast` skips them")
