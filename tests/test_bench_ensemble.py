"""benchmarks/bench_ensemble.py at tiny sizes: the table it prints has every row and column, with
numbers where numbers belong. Its timings are never asserted (a benchmark, not a test)."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from conftest import ROOT, argparse_refusal

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_ensemble  # noqa: E402
import bench_epoch  # noqa: E402
from initlab.config import ConfigError, to_experiment  # noqa: E402

TINY = ["--samples", "300", "--epochs", "1", "--repeats", "1", "--peak-size", "128", "--threads", "1",
        "--device", "cpu"]
SINGLE = ["FLOP floor", "job, one at a time", "initlab, all statistics", "initlab, statistics off",
          "plain PyTorch loop", "hooks loop (reference)"]
ROW = re.compile(r"^\| (?P<depth>\d+) \| (?P<variant>[^|]+) \| (?P<members>\d+) \| (?P<seconds>\d+\.\d{4}|-) \| "
                 r"(?P<vs>\d+\.\d{2}x|-) \| (?P<peak>\d+%|-) \|$")


def table(capsys, *args: str) -> list[dict]:
    threads = torch.get_num_threads()
    try:
        bench_ensemble.main([*TINY, *args])
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("device: cpu") and "torch " + torch.__version__ in lines[0]
    assert "GFLOP/s" in lines[1]
    assert lines[2] == "| " + " | ".join(bench_ensemble.COLUMNS) + " |" and lines[3].startswith("|---|")
    rows = [ROW.match(line) for line in lines[4:]]
    assert all(rows), [line for line, match in zip(lines[4:], rows) if not match]
    assert all(m["vs"] == m["peak"] == "-" for m in rows if m["seconds"] == "-")  # no figure from no measurement
    return [m.groupdict() for m in rows]


@pytest.mark.slow
def test_single_model_rows_per_depth(capsys):
    rows = table(capsys, "--depths", "1", "2", "--groups")
    assert [(r["depth"], r["variant"]) for r in rows] == [(d, v) for d in ("1", "2") for v in SINGLE]
    assert {r["members"] for r in rows} == {"1"}
    assert all(r["peak"] == "100%" for r in rows if r["variant"] == "FLOP floor")


@pytest.mark.slow
def test_ensemble_rows_per_group_size(capsys):
    rows = table(capsys, "--depths", "2", "--groups", "1", "2")
    ensemble = [(r["variant"], r["members"]) for r in rows if r["variant"] == "ensemble"]
    assert ensemble == [("ensemble", "1"), ("ensemble", "2")]
    assert len(rows) == len(SINGLE) + 2


@pytest.mark.slow
def test_side_by_side_rows_follow_each_group(capsys):
    rows = table(capsys, "--depths", "2", "--groups", "2", "--side-by-side", "2")
    ensemble = [(r["variant"], r["members"]) for r in rows if r["variant"].startswith("ensemble")]
    assert ensemble == [("ensemble", "2"), ("ensemble, 2 side by side", "2")]


@pytest.mark.parametrize("args, message", [
    (["--depths", "0"], "--depths must be >= 1, got 0"),
    (["--groups", "2", "-1"], "--groups must be >= 1, got -1"),
    (["--samples", "0"], "--samples must be >= 10 (one training sample per class of dataset blobs), got 0"),
    # blobs has 10 classes: 5 samples ended in "ConfigError: dataset.n_classes must be <= dataset.n_train"
    (["--samples", "5"], "--samples must be >= 10 (one training sample per class of dataset blobs), got 5"),
    (["--side-by-side", "0"], "--side-by-side must be >= 1, got 0"),
    (["--device", "foo"], "argument --device: invalid choice: 'foo' (choose from 'cpu', 'cuda')")])
def test_bad_sizes_are_refused_in_one_line(capsys, args, message):
    assert argparse_refusal(bench_ensemble.main, [*TINY, *args], capsys) == message


def test_samples_minimum_is_the_blobs_class_count():
    """The refusal's minimum is read from conf/dataset/blobs.yaml, not guessed: it composes, one less does not."""
    low = bench_epoch.min_samples()
    assert low == 10
    to_experiment(bench_epoch.job_config(2, low))
    with pytest.raises(ConfigError, match="^dataset.n_classes must be <= dataset.n_train"):
        to_experiment(bench_epoch.job_config(2, low - 1))


def test_an_unmeasured_difference_reads_as_a_dash():
    """A job row is the difference of a 2-epoch and a 1-epoch job; noise can make it negative, clamped
    to 0, which printed "| 2 | job, one at a time | 1 | 0.0000 | - | - |" as if measured."""
    for seconds in (0.0, -0.3):
        line = bench_ensemble.row(2, "job, one at a time", 1, seconds, 0.5, 0.2)
        assert line == "| 2 | job, one at a time | 1 | - | - | - |"
        assert ROW.match(line)
    assert bench_ensemble.row(2, "ensemble", 4, 0.25, 0.5, 0.2) == "| 2 | ensemble | 4 | 0.2500 | 2.00x | 80% |"


@pytest.mark.slow
def test_profile_caps_the_samples_it_records(capsys, monkeypatch):
    """--profile prints torch.profiler's operators of one group's job; the README's command (60 000
    samples, depth 50, 8 members) held more than 24 GiB of events and was killed for memory, so the
    profile trains at most PROFILE_SAMPLES samples and says so."""
    monkeypatch.setattr(bench_ensemble, "PROFILE_SAMPLES", 240)
    threads = torch.get_num_threads()
    try:
        bench_ensemble.main([*TINY, "--depths", "2", "--groups", "2", "--profile"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if line.startswith("2 member(s)"))
    assert header == "2 member(s), depth 2, 1 + 1 epochs, 240 training samples (--samples 300 cut to 240: " \
                     "profiler events fill memory)"
    assert any("aten::baddbmm" in line for line in out)  # the direct forward of the stacked members
