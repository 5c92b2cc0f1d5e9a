"""Diverging runs are recorded, never crashed: the divergence check comes before any measurement
that cannot handle non-finite weights (Jacobians, theory predictions), at every epoch, init included.

A diverged epoch keeps its epochs.csv row (with the non-finite loss) and its layers.csv rows (the
probe statistics as measured, non-finite where the signal overflowed, no predictions); it has no
Jacobian rows and no checkpoint. result.json says ``diverged`` with that epoch; the exit code is 0.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from pathlib import Path

import pytest
import torch

from conftest import compose_config, read_csv, read_json, run_job
from initlab.config import ConfigError, to_experiment
from initlab.measure.probes import ProbeStatistics, Row
from initlab.records import PREDICTED_COLUMNS, PROBE_COLUMNS
from initlab.train.callbacks import divergence

DIGITS_CLASSES = 10
# the issue's two commands (threads=1: the machine's cores are shared)
AT_INIT = ["init=normal", "init.std=1e12", "depth=3", "epochs=3", "threads=1"]
LARGE_LR = ["optimizer.lr=100", "jacobian_every=1", "depth=3", "model.width=32", "epochs=3", "threads=1"]


def assert_rows_match_files(job: Path, result: dict) -> None:
    """result.json's expected row counts are the files' data rows; absent files are not listed."""
    for name in ("epochs.csv", "layers.csv", "jacobian.csv", "jacobian_sv.csv"):
        if (job / name).exists():
            assert result["rows"][name] == len(read_csv(job / name)), name
        else:
            assert name not in result["rows"], name


@pytest.fixture(scope="module")
def issue_runs(tmp_path_factory):
    """Both commands of the issue, as jobs in this process (tests/test_train_cli.py runs a diverging
    job through train.py): name -> (what the job logged, its folder)."""
    runs = {}
    for name, args in (("at_init", AT_INIT), ("large_lr", LARGE_LR)):
        out = tmp_path_factory.mktemp(name) / "out"
        with job_log() as log:
            run_job(compose_config(*args), out)
        runs[name] = (log.getvalue(), out)
    return runs


@contextlib.contextmanager
def job_log():
    """Every log record of the job, formatted with its traceback if any, as the job's log file keeps them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_diverged_at_init_takes_no_training_step(issue_runs):
    log, out = issue_runs["at_init"]
    assert "Traceback" not in log
    result = read_json(out / "result.json")
    assert result["status"] == "diverged" and result["diverged_epoch"] == 0
    epochs = read_csv(out / "epochs.csv")
    assert [r["epoch"] for r in epochs] == ["0"], "no epoch is trained after a diverged init"
    assert not math.isfinite(float(epochs[0]["train_loss"]))
    assert epochs[0]["train_acc"] == epochs[0]["test_acc"] == "nan", "NaN logits have no accuracy (argmax: class 0)"
    assert result["final"]["test_acc"] is None
    assert result["train_time"] == 0 and result["final"]["epoch"] == 0
    layers = read_csv(out / "layers.csv")
    assert len(layers) == 3 + 1
    assert all(r[c] == "" for r in layers for c in PREDICTED_COLUMNS), "no predictions beside a diverged epoch"
    assert not (out / "jacobian.csv").exists() and not (out / "checkpoint.pt").exists()
    assert result["theory"]["sigma_w2"] == pytest.approx(128 * 1e24)  # the configuration's phase is still known
    assert_rows_match_files(out, result)
    assert "diverged at epoch 0" in log


def test_diverged_run_with_jacobians_keeps_its_rows(issue_runs):
    log, out = issue_runs["large_lr"]
    assert "Traceback" not in log and "LinAlgError" not in log
    result = read_json(out / "result.json")
    k = result["diverged_epoch"]
    assert result["status"] == "diverged" and isinstance(k, int) and 1 <= k <= 3
    epochs = read_csv(out / "epochs.csv")
    assert [int(r["epoch"]) for r in epochs] == list(range(k + 1))
    assert all(math.isfinite(float(r["train_loss"])) for r in epochs[:-1])
    assert all(math.isfinite(float(r["test_acc"])) for r in epochs[:-1])
    last = epochs[-1]
    assert [last[c] == "nan" for c in ("train_acc", "test_acc")] == [not math.isfinite(float(last[c]))
                                                                  for c in ("train_loss", "test_loss")]
    assert len(read_csv(out / "layers.csv")) == (k + 1) * 4
    jacobian = read_csv(out / "jacobian.csv")
    assert sorted({int(r["epoch"]) for r in jacobian}) == list(range(k)), "Jacobians only on finite epochs"
    assert all(math.isfinite(float(r["mean_sq_sv"])) for r in jacobian)
    assert_rows_match_files(out, result)


@pytest.mark.parametrize("std", ["1e30", "1e39"])  # overflowing signals; weights beyond float32 (inf)
def test_overflowing_init_is_diverged_at_init(tmp_path, std):
    result = run_job(compose_config("init=normal", f"init.std={std}", "depth=3", "epochs=2", "jacobian_every=1",
                                    "threads=1"), tmp_path)
    assert result["status"] == "diverged" and result["diverged_epoch"] == 0
    assert len(read_csv(tmp_path / "epochs.csv")) == 1
    assert_rows_match_files(tmp_path, result)
    json.loads((tmp_path / "result.json").read_text())  # strict JSON despite non-finite values


@pytest.mark.parametrize("init", [["init=he_uniform", "init.factor=1e80"], ["init=xavier_uniform", "init.gain=1e39"]],
                         ids=lambda o: ",".join(o))
def test_a_uniform_init_beyond_float32_is_diverged_at_init(tmp_path, init):
    """torch's uniform_ refused a bound beyond float32 ("from is out of bounds for float"): the job
    crashed with a half-written folder, where normal inits of that scale diverge at init."""
    result = run_job(compose_config(*init, "depth=2", "model.width=16", "epochs=1", "threads=1"), tmp_path)
    assert (result["status"], result["diverged_epoch"]) == ("diverged", 0)
    assert_rows_match_files(tmp_path, json.loads((tmp_path / "result.json").read_text()))


@pytest.mark.parametrize("override", ["activation=leaky_relu activation.negative_slope=1e300",
                                      "activation=elu activation.alpha=1e39"])
def test_an_activation_parameter_beyond_float32_is_refused(override):
    """torch computes with it in float32: negative_slope=1e300 crashed in the model summary."""
    with pytest.raises(ConfigError, match=r"must be in [\[(]0, 3\.4028234663852886e\+38\], got 1e\+(300|39)$"):
        to_experiment(compose_config(*override.split()))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_weights_turning_non_finite_mid_training_end_the_run_as_diverged(tmp_path, bad):
    """A healthy run's checkpoint after epoch 1 gets one non-finite weight (as an overflow would
    leave it); continued to epoch 3, it diverges at epoch 2 with epochs 0-1 kept as they were."""
    args = ["depth=3", "model.width=32", "jacobian_every=1", "threads=1", "device=cpu"]
    run_job(compose_config(*args, "epochs=1", "checkpoint=last"), tmp_path)
    before = read_csv(tmp_path / "layers.csv")
    (tmp_path / "result.json").unlink()  # as if interrupted after the checkpoint
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    state["model"]["hidden.1.weight"][0, 0] = bad
    torch.save(state, tmp_path / "checkpoint.pt")

    result = run_job(compose_config(*args, "epochs=3"), tmp_path)
    assert result["status"] == "diverged" and result["diverged_epoch"] == 2
    epochs = read_csv(tmp_path / "epochs.csv")
    assert [r["epoch"] for r in epochs] == ["0", "1", "2"]
    assert not math.isfinite(float(epochs[2]["train_loss"]))
    layers = read_csv(tmp_path / "layers.csv")
    assert layers[:len(before)] == before
    assert {r["epoch"] for r in read_csv(tmp_path / "jacobian.csv")} == {"0", "1"}
    assert_rows_match_files(tmp_path, result)


@pytest.mark.parametrize("overrides", [["optimizer.lr=1e39"], ["optimizer.weight_decay=1e300"],
                                       ["optimizer=adam", "optimizer.lr=1e38"]], ids=lambda o: ",".join(o))
def test_an_update_beyond_float32_is_divergence_not_a_crash(tmp_path, overrides, caplog):
    """torch refuses a step scalar beyond float32 ("value cannot be converted to type float without
    overflow": lr 1e39, Adam's lr / (1 - beta1) at 1e38): the job crashed mid-run with its folder
    half-written, while 1e38 with SGD diverged. Now the epoch diverges, recorded, exit 0."""
    with caplog.at_level(logging.WARNING, logger="initlab.train.job"):
        result = run_job(compose_config(*overrides, "depth=2", "model.width=16", "epochs=2", "threads=1"), tmp_path)
    assert (result["status"], result["diverged_epoch"]) == ("diverged", 1)
    assert "the optimizer's update overflowed float32" in caplog.text
    epochs = read_csv(tmp_path / "epochs.csv")
    assert [r["epoch"] for r in epochs] == ["0", "1"] and float(epochs[1]["train_loss"]) == math.inf
    assert_rows_match_files(tmp_path, json.loads((tmp_path / "result.json").read_text()))


def _stats(values: torch.Tensor, present: torch.Tensor) -> ProbeStatistics:
    rows = [Row(f"acts.{i}", "hidden", i, i + 1, f"hidden.{i}.weight") for i in range(len(values))]
    return ProbeStatistics(rows, values, present)


def test_a_non_finite_probe_statistic_is_divergence_even_with_finite_losses():
    row = {"epoch": 4, "train_loss": 0.3, "test_loss": 0.4}
    everywhere = torch.ones(4, len(PROBE_COLUMNS), dtype=torch.bool)
    stats = torch.ones(4, len(PROBE_COLUMNS), dtype=torch.float64)
    assert divergence(row, _stats(stats, everywhere)) is None
    stats[2, PROBE_COLUMNS.index("grad_norm")] = math.inf
    reason = divergence(row, _stats(stats, everywhere))
    assert reason == "non-finite probe grad_norm at acts.2"
    assert divergence({**row, "val_loss": math.nan}, _stats(torch.ones(4, len(PROBE_COLUMNS)), everywhere)) \
        == "val_loss nan"


def test_a_column_that_does_not_apply_is_not_divergence():
    """NaN marks a column that does not apply to a row (a site with no weight): not a divergence."""
    stats = torch.ones(2, len(PROBE_COLUMNS), dtype=torch.float64)
    present = torch.ones(2, len(PROBE_COLUMNS), dtype=torch.bool)
    stats[1, PROBE_COLUMNS.index("weight_norm")] = math.nan
    present[1, PROBE_COLUMNS.index("weight_norm")] = False
    assert divergence({"train_loss": 0.3}, _stats(stats, present)) is None


# Valid configurations at the edge of what mean-field theory handles: sigma_w^2 overflowing a
# float, a bias variance with no critical point in range, no hidden-to-hidden Jacobian (depth 1),
# and extreme activation parameters. The job completes (or diverges); the theory is NaN/null.
EDGE_CONFIGS = [
    ["activation=tanh", "model.bias_init=normal", "model.bias_std=1000"],
    ["model.bias_init=normal", "model.bias_std=1e300"],  # sigma_b^2 overflows: OverflowError crashed the job
    ["init=normal", "init.std=1e200"],
    ["depth=1", "activation=tanh"],
    ["activation=leaky_relu", "activation.negative_slope=1e6"],
    ["activation=elu", "activation.alpha=1e6"],
    ["init=zero", "activation=sigmoid"],
]


@pytest.mark.parametrize("overrides", EDGE_CONFIGS, ids=lambda o: ",".join(o))
def test_theory_never_crashes_a_job(tmp_path, overrides):
    result = run_job(compose_config(*overrides, "epochs=0", "model.width=32", "probe_size=200", "threads=1"),
                     tmp_path)
    assert result["status"] in ("completed", "diverged")
    written = json.loads((tmp_path / "result.json").read_text())
    assert set(written["theory"]) == {"sigma_w2", "sigma_b2", "chi1", "q_star", "xi_q", "xi_c",
                                      "critical_sigma_w2"}
    assert_rows_match_files(tmp_path, written)


def test_an_overflowing_sigma_w2_is_said_in_words(tmp_path, caplog):
    """The warning read "...: (34, 'Numerical result out of range')", Python's errno tuple."""
    with caplog.at_level(logging.WARNING, logger="initlab.train.predictions"):
        run_job(compose_config("init=normal", "init.std=1e200", "epochs=0", "model.width=16", "threads=1"), tmp_path)
    assert "mean-field sigma_w2 not computed for this configuration: a value overflows a float" in caplog.text
    assert "Numerical result" not in caplog.text
