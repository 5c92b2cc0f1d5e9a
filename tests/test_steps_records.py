"""steps.csv and the loss choice by value: a float64 NumPy replay of the job's optimizer steps.

The replay is tests/test_training_values.py's (torch gives only the data, the initial weights
and the batch order). Tolerances as there: float32 training against a float64 replay agrees to
~1e-7 relative over an epoch; 1e-5 is asserted.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import read_csv
from initlab.records import STEPS_COLUMNS
from initlab.train.job import _probe_batch
from test_statistics import np_forward, params_of, rebuild_initial_model
from test_training_values import np_loss_delta, replay, run_and_replay

STEPS_PER_EPOCH = 23  # digits: 1437 training samples in batches of 64


def _by_step(rows: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for row in rows:
        out.setdefault(int(row["step"]), []).append(row)
    return out


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_every_logged_step_equals_the_replay(tmp_path, loss):
    """log_every_steps=1 over two epochs: each step's loss, lr and per-layer norms."""
    exp, data, _ = run_and_replay(tmp_path, "epochs=2", "optimizer=momentum", "optimizer.lr=0.05",
                                  f"loss={loss}", "log_every_steps=1")
    want = []
    replay(exp, data, step_log=want)
    rows = read_csv(tmp_path / "steps.csv")
    assert tuple(rows[0]) == STEPS_COLUMNS + ("attempt",)
    got = _by_step(rows)
    assert sorted(got) == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    layers = [r for r in read_csv(tmp_path / "layers.csv") if r["epoch"] == "0"]
    for ref in want:
        step_rows = got[ref["step"]]
        assert [r["site"] for r in step_rows] == [r["site"] for r in layers]
        assert [r["layer"] for r in step_rows] == ["1", "2", "3"]
        assert {int(r["epoch"]) for r in step_rows} == {ref["epoch"]}
        assert {float(r["lr"]) for r in step_rows} == {0.05}
        assert {int(r["attempt"]) for r in step_rows} == {0}
        assert float(step_rows[0]["loss"]) == pytest.approx(ref["loss"], rel=1e-5)
        for column in ("weight_norm", "grad_norm", "bias_grad_norm"):
            np.testing.assert_allclose([float(r[column]) for r in step_rows], ref[column], rtol=1e-5,
                                       err_msg=f"step {ref['step']} {column}")


def test_log_every_steps_chooses_the_logged_steps(tmp_path):
    """k=5 and k=7 log the multiples of k (counted over the run, across epochs), with the very
    rows k=1 writes at those steps."""
    base = ["epochs=2", "optimizer.lr=0.1"]
    files = {}
    for k in (1, 5, 7):
        run_and_replay(tmp_path / str(k), *base, f"log_every_steps={k}")
        files[k] = read_csv(tmp_path / str(k) / "steps.csv")
    for k in (5, 7):
        assert sorted(_by_step(files[k])) == list(range(k, 2 * STEPS_PER_EPOCH + 1, k))
        assert files[k] == [r for r in files[1] if int(r["step"]) % k == 0]
    assert not (tmp_path / "off").exists()
    run_and_replay(tmp_path / "off", *base)
    assert not (tmp_path / "off" / "steps.csv").exists(), "log_every_steps=0 writes no steps.csv"


def test_mse_trains_evaluates_and_probes_with_the_mse(tmp_path):
    """loss=mse: train and test loss, the trained weights' test loss, and the probe's
    delta = dL/dh at the output, all against the NumPy MSE on one-hot targets."""
    exp, data, (epochs, _, params) = run_and_replay(tmp_path, "epochs=2", "optimizer.lr=0.1", "loss=mse")
    rows = read_csv(tmp_path / "epochs.csv")
    x_test, y_test = data.x_test.double().numpy(), data.y_test.numpy()
    initial = params_of(rebuild_initial_model(exp, data))
    for epoch, weights in ((0, initial), (2, params)):
        logits = np_forward(weights, exp.activation.name, x_test)[0][-1]
        assert float(rows[epoch]["test_loss"]) == pytest.approx(np_loss_delta(logits, y_test, "mse")[0], rel=1e-5)
    for epoch, want in enumerate(epochs, start=1):
        assert float(rows[epoch]["train_loss"]) == pytest.approx(want["train_loss"], rel=1e-5)
    x_probe, y_probe = _probe_batch(data, exp.probe_size, exp.seed)
    logits = np_forward(initial, exp.activation.name, x_probe.double().numpy())[0][-1]
    _, delta = np_loss_delta(logits, y_probe.numpy(), "mse")
    output = next(r for r in read_csv(tmp_path / "layers.csv") if r["epoch"] == "0" and r["kind"] == "output")
    assert float(output["delta_rms"]) == pytest.approx(np.sqrt((delta ** 2).mean()), rel=1e-5)
    ce = np_loss_delta(logits, y_probe.numpy(), "cross_entropy")[1]
    assert abs(np.sqrt((ce ** 2).mean()) / np.sqrt((delta ** 2).mean()) - 1) > 0.05, "the losses must differ here"
