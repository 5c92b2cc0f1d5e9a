"""train.py end to end, as a user runs it: bad input is refused before anything trains, a run and a
multirun write their records, a diverging run is recorded as such.

The real ``python train.py`` calls are submitted up front to a pool of two processes (the machine
has two cores and most of each call is interpreter start-up); each test then checks its own call's
outcome. Bad input that train.py's pre-check refuses runs train.py in this process (one such
refusal still goes through a real process), and so does the epochs=0 job, whose records are what
its test checks.
"""

from __future__ import annotations

import fcntl
import math
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch

from conftest import (ROOT, Completed, compose_config, group_choices, read_csv, read_csv_header, read_json, run_job,
                      train_env, train_refused_in_process)
from initlab.records import PROBE_COLUMNS
from initlab.records import EPOCH_COLUMNS, GRAD_COLUMNS, LAYER_COLUMNS

DEFAULT_DEPTH = 5  # conf/config.yaml

# name -> (overrides, regex the one `error: ...` line on stderr must match); every kind of bad input
# (unknown choice, unknown key, bad type, out of range, non-finite) gets one line and exit status 2.
BAD_INPUTS = {
    "unknown activation": (["activation=swish"], r"^error: unknown activation 'swish'; valid: elu, gelu, "),
    "unknown init": (["init=glorot"], r"^error: unknown init 'glorot'; valid: delta_orthogonal, he_normal, he_uniform, "),
    "unknown dataset": (["dataset=imagenet"], r"^error: unknown dataset 'imagenet'; valid: blobs, cifar10, "),
    "unknown optimizer": (["optimizer=lbfgs"], r"^error: unknown optimizer 'lbfgs'; valid: adam, adamw, "),
    "depth=0": (["depth=0"], r"^error: depth must be > 0, got 0$"),
    "depth=-1": (["depth=-1"], r"^error: depth must be > 0, got -1$"),
    "width=0": (["model.width=0"], r"^error: model\.width must be > 0, got 0$"),
    "epochs=-1": (["epochs=-1"], r"^error: epochs must be >= 0, got -1$"),
    "batch_size=0": (["batch_size=0"], r"^error: batch_size must be > 0, got 0$"),
    "lr=-0.1": (["optimizer.lr=-0.1"], r"^error: optimizer\.lr must be finite and > 0, got -0\.1$"),
    "probe_size=0": (["probe_size=0"], r"^error: probe_size must be > 0, got 0$"),
    "init.std=0": (["init=normal", "init.std=0"], r"^error: init\.std must be finite and > 0, got 0(\.0)?$"),
    "init.factor=inf": (["init.factor=inf"], r"^error: init\.factor must be finite and > 0, got inf$"),
    "init.std=inf": (["init=normal", "init.std=inf"], r"^error: init\.std must be finite and > 0, got inf$"),
    "noise=inf": (["dataset=moons", "dataset.noise=inf"], r"^error: dataset\.noise must be finite and >= 0, got inf$"),
    "+init.factr": (["+init.factr=2"], r"^error: unknown init parameter\(s\) factr for init=he_normal; "
                                       r"valid: apply_to, embedding, factor, mode$"),
    "init.factr": (["init.factr=2"], r"^error: unknown init parameter\(s\) factr for init=he_normal; "
                                     r"valid: apply_to, embedding, factor, mode$"),
    "init.mode=fan_x": (["init.mode=fan_x"], r"^error: init\.mode=fan_x: Invalid value 'fan_x'; valid: one of "
                                             r"fan_in, fan_out$"),
    "device=cuda": (["device=cuda"], r"^error: device=cuda but no CUDA GPU is visible; valid here: auto or cpu$"),
    # a flag (--config-dir) skips the pre-check: the job's own check reads the user's file
    "bool in a user's file": (["--config-dir", "USERS_CONF", "optimizer=two"],
                              r"^error: /.*/optimizer/two\.yaml: nesterov: 2: not a bool; valid: true or false$"),
}
USERS_CONF = {"optimizer/two.yaml": "defaults:\n  - momentum\n  - _self_\nnesterov: 2\n"}  # written for the call

# Every bad input above but these is refused by train.py's pre-check before Hydra starts: those run
# train.py as __main__ in this process (conftest.train_refused_in_process); one of them and the one
# found at run time, once Hydra runs the job, go through a real ``python train.py`` process.
IN_A_PROCESS = {"unknown activation", "device=cuda", "bool in a user's file"}

DIVERGE = ["optimizer.lr=1e6", "epochs=3"]  # digits, relu, he_normal: NaN loss in the first epoch
SWEEP = ["-m", "activation=relu,tanh", "init=he_normal,orthogonal", "depth=2,3", "epochs=1"]


# calls each non-parametrized test reads (parametrized bad-input tests read the call of their name)
NEEDS = {
    "test_missing_dataset_files_are_one_error_line_naming_the_folder": ["missing dataset"],
    "test_run_writes_epochs_layers_result_and_log": ["epochs=2"],
    "test_epochs_zero_writes_only_the_init_row": ["epochs=2"],
    "test_diverging_run_is_recorded_as_diverged": ["diverge"],
    "test_multirun_writes_every_job": ["sweep"],
}


@pytest.fixture(scope="module")
def cli(request, train_pool, tmp_path_factory):
    """Submit the calls the selected tests need, all at once; return name -> (future, folder[, extra])."""
    wanted = set()
    for item in request.session.items:
        if item.module is request.module:
            wanted.update(NEEDS.get(item.originalname, []))
            if item.originalname == "test_bad_input_is_refused_before_training" and \
                    item.callspec.params["name"] in IN_A_PROCESS:
                wanted.add(item.callspec.params["name"])
    calls = {}

    def submit(name, args, dir_key="hydra.run.dir"):
        if name not in wanted:
            return
        folder = tmp_path_factory.mktemp(re.sub(r"\W+", "_", name))
        out = folder / "out"
        calls[name] = (train_pool(*args, f"{dir_key}={out}"), out)

    submit("sweep", SWEEP, "hydra.sweep.dir")  # the longest first, so the rest overlaps it
    submit("epochs=2", ["epochs=2"])
    submit("diverge", DIVERGE)
    users_conf = tmp_path_factory.mktemp("users_conf")
    for file, text in USERS_CONF.items():
        (users_conf / file).parent.mkdir(parents=True, exist_ok=True)
        (users_conf / file).write_text(text)
    for name, (overrides, _) in BAD_INPUTS.items():
        if name == "device=cuda" and torch.cuda.is_available():
            continue
        submit(name, [str(users_conf) if arg == "USERS_CONF" else arg for arg in overrides])
    missing = tmp_path_factory.mktemp("no_data") / "mnist_root"
    submit("missing dataset", ["dataset=mnist", f"dataset.root={missing}", "dataset.download=false"])
    if "missing dataset" in calls:
        calls["missing dataset"] += (missing,)
    return calls


def outcome(cli, name) -> tuple[Completed, Path]:
    future, folder = cli[name][:2]
    return future.result(), folder


# --- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_refused_before_training(cli, name, tmp_path):
    if name == "device=cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: device=cuda is valid here")
    overrides, pattern = BAD_INPUTS[name]
    if name in IN_A_PROCESS:
        done, folder = outcome(cli, name)
    else:
        folder = tmp_path / "out"
        done = train_refused_in_process(*overrides, f"hydra.run.dir={folder}")
    assert done.returncode == 2, done.describe()
    assert "Traceback" not in done.stderr, done.describe()
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and re.search(pattern, error_lines[0]), done.describe()
    assert not done.stderr.replace(error_lines[0], "").strip(), done.describe()  # nothing else on stderr
    if name.startswith("unknown "):
        group = name.split()[1]
        assert error_lines[0].endswith(", ".join(group_choices(group))), done.describe()
    assert not folder.exists(), "a job refused for bad input leaves no run folder"


def test_missing_dataset_files_are_one_error_line_naming_the_folder(cli):
    done, folder = outcome(cli, "missing dataset")
    root = cli["missing dataset"][2]
    assert done.returncode == 2, done.describe()
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, done.describe()
    assert error_lines[0].startswith(f"error: dataset mnist: files not found under {root.resolve()} and download=false")
    assert "dataset.root" in error_lines[0]  # says how to fix it
    assert len(error_lines[0].replace(str(root.resolve()), "ROOT")) < 160, done.describe()
    assert done.stderr.strip() == error_lines[0] and "error" not in done.stdout.lower(), "printed once"
    assert not folder.exists(), "the run folder of a job that failed on bad input is removed"
    assert not root.exists(), "no empty data folders left behind"


# --- a run ------------------------------------------------------------------------------------------
def test_run_writes_epochs_layers_result_and_log(cli):
    done, out = outcome(cli, "epochs=2")
    assert done.returncode == 0, done.describe()
    epochs = read_csv(out / "epochs.csv")
    assert read_csv_header(out / "epochs.csv") == list(EPOCH_COLUMNS) + list(GRAD_COLUMNS) + ["attempt"]
    assert epochs[0]["grad_norm"] == "" and all(float(r["grad_norm"]) > 0 for r in epochs[1:])
    assert [r["epoch"] for r in epochs] == ["0", "1", "2"]
    for row in epochs:
        assert all(math.isfinite(float(row[c])) for c in EPOCH_COLUMNS)
        assert 0 <= float(row["train_acc"]) <= 1 and 0 <= float(row["test_acc"]) <= 1
    assert float(epochs[2]["train_loss"]) < float(epochs[0]["train_loss"])  # it learns

    layers = read_csv(out / "layers.csv")
    assert read_csv_header(out / "layers.csv") == [*LAYER_COLUMNS, "attempt"]
    assert len(layers) == 3 * (DEFAULT_DEPTH + 1)
    assert [(r["epoch"], r["layer"]) for r in layers] == [
        (str(e), str(l)) for e in range(3) for l in range(1, DEFAULT_DEPTH + 2)]
    for row in layers:
        assert all(math.isfinite(float(row[c])) for c in PROBE_COLUMNS)
        assert (row["grad_norm_train"] == "") == (row["epoch"] == "0")

    result = read_json(out / "result.json")
    assert result["status"] == "completed" and result["diverged_epoch"] is None and result["job_num"] is None
    assert result["final"]["epoch"] == 2
    assert result["final"]["test_loss"] == float(epochs[-1]["test_loss"])
    assert set(result["versions"]) >= {"initlab", "torch", "hydra", "python"}
    assert result["versions"]["torch"] == torch.__version__
    assert result["choices"]["activation"] == {"name": "relu", "transform": "none", "c_val_0_target": None,
                                               "c_curve_target": None, "c_slope_1_target": None}
    assert result["choices"]["init"] == {"name": "he_normal", "factor": 2.0, "mode": "fan_in", "apply_to": "all",
                                         "embedding": False}
    assert result["choices"]["epochs"] == 2 and result["choices"]["depth"] == DEFAULT_DEPTH
    assert result["choices"]["jacobian_every"] == 0
    assert not set(result["choices"]) & {"threads", "device", "resume", "checkpoint", "logger"}
    assert result["device"].startswith("cuda" if torch.cuda.is_available() else "cpu")
    assert result["wall_time"] >= result["train_time"] > 0
    width = 128  # the default MLP on digits (64 features, 10 classes): weights and biases
    assert result["n_params"] == (64 + 1) * width + (DEFAULT_DEPTH - 1) * (width + 1) * width + (width + 1) * 10
    assert result["theory_reason"] is None
    assert not (out / "checkpoint.pt").exists()
    assert result["rows"] == {name: len(read_csv(out / name))
                              for name in ("epochs.csv", "layers.csv", "jacobian.csv", "jacobian_sv.csv")}
    assert result["rows"]["jacobian.csv"] == 2  # at init only: hidden and input_output

    (log,) = out.glob("*.log")
    epoch_lines = [line for line in log.read_text().splitlines() if re.search(r"\bepoch \d+/2\b", line)]
    assert [re.search(r"epoch (\d+)/2", line).group(1) for line in epoch_lines] == ["0", "1", "2"]
    assert (out / ".hydra" / "config.yaml").is_file()


def test_epochs_zero_writes_only_the_init_row(cli, tmp_path):
    """In this process (what it checks is the job's, not train.py's), against the CLI's epochs=2 run."""
    out = tmp_path / "out"
    run_job(compose_config("epochs=0"), out)
    assert [r["epoch"] for r in read_csv(out / "epochs.csv")] == ["0"]
    layers = read_csv(out / "layers.csv")
    assert len(layers) == DEFAULT_DEPTH + 1 and {r["epoch"] for r in layers} == {"0"}
    result = read_json(out / "result.json")
    assert result["status"] == "completed" and result["final"]["epoch"] == 0 and result["train_time"] == 0
    # the same seed gives the same initial state as the epochs=2 run
    done2, out2 = outcome(cli, "epochs=2")
    assert read_csv(out2 / "layers.csv")[:DEFAULT_DEPTH + 1] == layers


def test_diverging_run_is_recorded_as_diverged(cli):
    done, out = outcome(cli, "diverge")
    assert done.returncode == 0, done.describe()
    result = read_json(out / "result.json")
    assert result["status"] == "diverged"
    k = result["diverged_epoch"]
    assert isinstance(k, int) and 1 <= k <= 3
    epochs = read_csv(out / "epochs.csv")
    assert [int(r["epoch"]) for r in epochs] == list(range(k + 1))  # rows kept, up to the diverged epoch
    assert not math.isfinite(float(epochs[-1]["train_loss"]))
    assert all(math.isfinite(float(r["train_loss"])) for r in epochs[:-1])
    assert len(read_csv(out / "layers.csv")) == (k + 1) * (DEFAULT_DEPTH + 1)
    assert result["final"]["epoch"] == k
    (log,) = out.glob("*.log")
    assert "diverged" in log.read_text()


# --- a multirun -------------------------------------------------------------------------------------
def test_multirun_writes_every_job(cli):
    done, sweep = outcome(cli, "sweep")
    assert done.returncode == 0, done.describe()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(jobs) == 8, [p.name for p in jobs]
    seen, nums = set(), []
    for job in jobs:
        for name in ("epochs.csv", "layers.csv", "result.json"):
            assert (job / name).is_file(), f"{job.name}: {name} missing"
        result = read_json(job / "result.json")
        assert result["status"] == "completed"
        nums.append(result["job_num"])  # Hydra's job number of the run that trained it
        choice = (result["choices"]["activation"]["name"], result["choices"]["init"]["name"], result["choices"]["depth"])
        seen.add(choice)
        # the folder is named after the job's overrides
        assert f"activation={choice[0]}" in job.name and f"init={choice[1]}" in job.name
        assert f"depth={choice[2]}" in job.name
        assert [r["epoch"] for r in read_csv(job / "epochs.csv")] == ["0", "1"]
        assert len(read_csv(job / "layers.csv")) == 2 * (choice[2] + 1)
    assert seen == {(a, i, d) for a in ("relu", "tanh") for i in ("he_normal", "orthogonal") for d in (2, 3)}
    assert sorted(nums) == list(range(8))


# --- progress bar and log lines on a terminal ----------------------------------------------------
def run_on_terminal(*args: str, timeout: float = 300) -> str:
    """``python train.py ARGS`` with stdout and stderr on a pseudo-terminal (so tqdm draws its bar);
    returns everything written to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns: room for a bar
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=train_env())
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_epoch_log_lines_do_not_interleave_with_the_progress_bar(tmp_path):
    """On a terminal each epoch's log line starts its own line (tqdm.write clears the bar first),
    and the job's log file still gets every epoch line."""
    out = tmp_path / "out"
    screen = run_on_terminal("epochs=3", "depth=2", "model.width=32", "threads=1", f"hydra.run.dir={out}")
    assert re.search(r"\|\s*3/3 \[", screen), f"no progress bar was drawn: {screen!r}"
    lines = [line for line in screen.replace("\r\n", "\n").split("\n") if re.search(r"epoch [123]/3  train_loss", line)]
    assert len(lines) == 3, screen
    for line in lines:
        after_bar = line.rsplit("\r", 1)[-1]  # what remains on the screen after carriage returns
        assert re.match(r"\s*\[\d{4}-\d\d-\d\d ", after_bar), repr(line)
    (log,) = out.glob("*.log")
    logged = re.findall(r"epoch (\d)/3  train_loss", log.read_text())
    assert logged == ["0", "1", "2", "3"]
