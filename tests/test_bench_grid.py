"""benchmarks/bench_grid.py at tiny sizes: its tables have every row, with numbers where numbers
belong, and the projection is the sum of its rows. Timings are never asserted."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from conftest import ROOT, argparse_refusal, group_choices

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_epoch  # noqa: E402
import bench_grid  # noqa: E402

GROUP_ROW = re.compile(r"^\| (\w+) \| (\d+) \| (\d+\.\d{2}) \| (\d+\.\d{3}) \| (\d+) \|$")
UNMEASURED_ROW = re.compile(r"^\| (\w+) \| (\d+) \| - \| - \| - \|$")


@pytest.mark.slow
def test_projection_has_a_row_per_group_and_sums_them(capsys):
    threads = torch.get_num_threads()
    try:
        bench_grid.main(["project", "--members", "1", "--samples", "300", "--depths", "1", "2", "--activations",
                         "relu", "tanh", "--epochs", "1", "--grid-epochs", "3", "--threads", "1", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("device: cpu") and "one job at a time" in lines[1]
    rows = [GROUP_ROW.match(line) or UNMEASURED_ROW.match(line) for line in lines[4:-1]]
    assert all(rows), lines[4:-1]
    assert [(m[1], m[2]) for m in rows] == [("relu", "1"), ("relu", "2"), ("tanh", "1"), ("tanh", "2")]
    # each row: 8 inits one at a time x (fixed + 3 epochs); the total is their sum (rounded per row);
    # at these tiny sizes a row can be noise (its longer job no slower): shown as '-', left out of the sum
    measured = [m for m in rows if m.re is GROUP_ROW]
    for m in measured:
        assert abs(int(m[5]) - 8 * (float(m[3]) + 3 * float(m[4]))) <= 0.6 + 8 * 0.005 + 24 * 0.0005
    total = re.match(r"^projected full grid: (\d+) s = \d+\.\d{2} h$", lines[-1]) if len(measured) == len(rows) \
        else re.match(r"^projected full grid: not measured .* the measured rows sum to (\d+) s$", lines[-1])
    assert abs(float(total[1]) - sum(int(m[5]) for m in measured)) <= len(rows)


@pytest.mark.slow
def test_sweep_timing_runs_each_launcher(capsys):
    bench_grid.main(["time", "--launchers", "basic", "--", "epochs=1", "depth=2", "activation=relu",
                     "init=he_normal,zero", "seed=0"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "+experiment=grid_quick threads=null epochs=1 depth=2 activation=relu init=he_normal,zero seed=0"
    assert lines[2] == "| launcher | jobs finished | wall s | speed-up over basic |"
    assert re.match(r"^\| basic \| 2 \| \d+\.\d \| 1\.00x \|$", lines[4]), lines


@pytest.mark.slow
def test_a_failing_sweep_stops_with_its_launcher_named(capsys):
    with pytest.raises(SystemExit, match=r"^hydra/launcher=basic: train.py exited 2$"):
        bench_grid.main(["time", "--launchers", "basic", "--", "depth=0", "seed=0"])


# options bench_grid.parse accepts (main calls it before any work); each case adds one bad value
PROJECT = ["project", "--members", "8", "--samples", "300", "--depths", "1", "--activations", "relu", "--epochs", "1",
           "--grid-epochs", "1", "--threads", "1", "--device", "cpu"]
ACTIVATIONS = ", ".join(group_choices("activation"))


@pytest.mark.parametrize("args, message", [
    # Hydra's 76-line MissingConfigException before
    (["--activations", "relu", "nosuch"], f"--activations: unknown 'nosuch'; valid: {ACTIVATIONS}"),
    (["--activations", "relu", "relu"], "--activations names relu twice; give each value once"),
    (["--depths", "0"], "--depths must be >= 1, got 0"),  # a ConfigError traceback
    (["--depths", "2", "-3"], "--depths must be >= 1, got -3"),
    (["--depths", "1", "1"], "--depths names 1 twice; give each value once"),
    (["--samples", "9"], "--samples must be >= 10 (one training sample per class of dataset blobs), got 9"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--grid-epochs", "0"], "--grid-epochs must be >= 1, got 0"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--members", "3"], "argument --members: invalid choice: 3 (choose from 1, 2, 4, 8)"),
    (["--device", "foo"], "argument --device: invalid choice: 'foo' (choose from 'cpu', 'cuda')")])
def test_project_refuses_bad_options_in_one_line(capsys, args, message):
    assert argparse_refusal(bench_grid.parse, [*PROJECT, *args], capsys) == message


TINY_SWEEP = ["--", "epochs=1", "depth=2", "activation=relu", "init=zero", "seed=0"]


def launchers() -> str:
    """hydra/launcher's choices: conf/hydra/launcher's and the installed plugins' (basic, joblib, ...)."""
    valid = bench_epoch.conf_choices("hydra/launcher")
    assert {"basic", "batched", "batched_parallel", "parallel"} <= set(valid)
    return ", ".join(valid)


@pytest.mark.parametrize("names, message", [
    (["basic", "basic"], "--launchers names basic twice; give each value once"),  # two rows of one timing
    (["basic", "nosuch"], "--launchers: unknown 'nosuch'; valid: {valid}"),
])
def test_time_refuses_bad_launchers_in_one_line(capsys, names, message):
    refusal = argparse_refusal(bench_grid.parse, ["time", "--launchers", *names, *TINY_SWEEP], capsys)
    assert refusal == message.format(valid=launchers())


def test_an_unmeasured_row_is_shown_as_unmeasured():
    """A per-epoch time clamped to 0 (the longer job no slower: noise at tiny sizes) printed 0.000
    s/epoch and added fixed seconds alone to the total, as if the epochs were free."""
    line, seconds = bench_grid.projected_row("relu", 50, 1.5, 0.0, 8, 50)
    assert (line, seconds) == ("| relu | 50 | - | - | - |", None)
    line, seconds = bench_grid.projected_row("tanh", 20, 1.5, 0.25, 8, 50)
    assert (line, seconds) == ("| tanh | 20 | 1.50 | 0.250 | 112 |", 8 * (1.5 + 50 * 0.25))
    assert bench_grid.projected_total([100.0, 3500.0]) == "projected full grid: 3600 s = 1.00 h"
    assert bench_grid.projected_total([100.0, None, 50.0]) == (
        "projected full grid: not measured (1 of 3 rows took no longer with more epochs; raise --samples or "
        "--epochs); the measured rows sum to 150 s")
