"""Analysis tables by value: hand-computed answers on fabricated job folders, theory columns of
real jobs against independent closed forms and quadrature.

The fabricated folders hold exactly what a finished job writes (result.json, epochs.csv,
layers.csv, jacobian.csv) with numbers chosen so each summary has one right answer that a
plausible slip would miss: epoch 0 reaches the threshold (it must not count), the train and test
curves cross 95% at different epochs, the log ratios have different mean, median and signed
median, and the output layer is far off the prediction (it must not count).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from conftest import compose_config, run_job
from initlab.analysis import report
from initlab.analysis import tables as analysis
from initlab.analysis.tables import REQUIRED_EPOCH_COLUMNS

DEPTH = 4
TRAIN_ACC = [0.97, 0.50, 0.90, 0.96, 1.00, 0.98]  # peak 1.00 -> 0.95: epoch 3 (epoch 0 must not count)
TEST_ACC = [0.95, 0.85, 0.50, 0.80, 0.90, 0.90]  # final 0.90 -> 0.855: epoch 4 (train's rule gives 3)
Q_LOG = [0.1, -0.3, 0.7]  # ln(preact_sq / q_pred) of hidden layers 1-3; layer 4 measures 0 (drops)
DELTA_LOG = [0.4, -0.05, 0.1, -0.6]  # ln(delta_rms / delta_rms_pred) of the hidden layers
TRAIN_LOSS = [0.01, 2.0, 0.9, 0.3, 0.2, 0.25]  # best (epoch 0 excluded) 0.2, final 0.25
TEST_LOSS = [0.02, 2.1, 0.4, 0.6, 0.5, 0.7]  # best 0.4 at epoch 2, final 0.7


def write_job(folder: Path, seed: int = 0, init: str = "he_normal", test_shift: float = 0.0,
              q_log=Q_LOG, delta_log=DELTA_LOG, jac=(3.0, 2.0)) -> Path:
    """A finished 5-epoch job; ``test_shift`` is added to every test accuracy."""
    folder.mkdir(parents=True)
    epochs = pd.DataFrame({"epoch": range(6), "train_loss": TRAIN_LOSS, "train_acc": TRAIN_ACC,
                           "test_loss": TEST_LOSS, "test_acc": np.add(TEST_ACC, test_shift),
                           "epoch_time": [0.0, 1.0, 1.0, 2.0, 1.0, 1.0], "lr": 0.1})[list(REQUIRED_EPOCH_COLUMNS)]
    epochs.to_csv(folder / "epochs.csv", index=False)
    rows = []
    for epoch in range(6):
        for layer in range(1, DEPTH + 2):
            hidden = layer <= DEPTH
            q_pred = float(2 ** layer)
            q_meas = (q_pred * math.exp(q_log[layer - 1]) if layer <= len(q_log) else 0.0) if hidden \
                else q_pred * math.exp(5)  # the output layer: far off, and not counted
            d_pred = 0.01 * layer
            d_meas = d_pred * math.exp(delta_log[layer - 1]) if hidden else d_pred * math.exp(-4)
            at_init = epoch == 0
            rows.append({"epoch": epoch, "layer": layer, "preact_sq": q_meas if at_init else 9.0,
                         "act_mean": 0.1, "act_std": 1.0, "frac_zero": 0.5, "frac_saturated": 0.0,
                         "grad_norm": 0.1, "delta_rms": d_meas if at_init else 7.0,
                         "q_pred": q_pred if at_init else None, "delta_rms_pred": d_pred if at_init else None})
    pd.DataFrame(rows).to_csv(folder / "layers.csv", index=False)
    jacobian = [{"epoch": 0, "kind": "input_output", "mean_sq_sv": 10.0, "mean_sq_sv_pred": None},
                {"epoch": 0, "kind": "hidden", "mean_sq_sv": jac[0], "mean_sq_sv_pred": jac[1]},
                {"epoch": 5, "kind": "hidden", "mean_sq_sv": 50.0, "mean_sq_sv_pred": None}]
    pd.DataFrame(jacobian).to_csv(folder / "jacobian.csv", index=False)
    final = epochs.iloc[-1].to_dict()
    result = {"status": "completed", "diverged_epoch": None, "final": {**final, "epoch": 5}, "wall_time": 9.0,
              "choices": {"activation": {"name": "relu"}, "init": {"name": init}, "dataset": {"name": "digits"},
                          "optimizer": {"name": "sgd", "lr": 0.1}, "model": {"name": "mlp", "width": 8},
                          "depth": DEPTH, "epochs": 5, "batch_size": 64, "seed": seed, "probe_size": 10},
              "data": {"n_features": 64, "n_classes": 10, "n_train": 100, "n_val": 0, "n_test": 50}}
    (folder / "result.json").write_text(json.dumps(result))
    return folder


def test_convergence_epochs_and_misfits_by_hand(tmp_path):
    runs = analysis.load([write_job(tmp_path / "job")]).runs
    row = runs.iloc[0]
    assert row["epochs_to_95_peak_train"] == 3
    assert row["epochs_to_95_final_test"] == 4
    assert row["best_train_acc"] == 1.0 and row["best_test_acc"] == pytest.approx(0.90)  # epoch 0 excluded
    assert (row["best_train_loss"], row["best_test_loss"]) == (0.2, 0.4)  # minima over epochs 1-5
    assert (row["final_train_loss"], row["final_test_loss"]) == (0.25, 0.7)
    assert (row["final_train_acc"], row["final_test_acc"]) == (0.98, 0.90)
    assert row["epochs_run"] == 5 and row["status"] == "completed"
    assert row["q_log_misfit"] == pytest.approx(0.3, rel=1e-12)  # median |0.1, -0.3, 0.7|; zero dropped
    assert row["delta_log_misfit"] == pytest.approx(0.25, rel=1e-12)  # median |0.4, -0.05, 0.1, -0.6|
    assert row["jac_msv_ratio"] == pytest.approx(1.5, rel=1e-12)  # epoch 0 hidden: 3 / 2
    assert row["s_per_epoch"] == pytest.approx(6 / 5)
    assert row["chance"] == pytest.approx(0.1)


@pytest.mark.parametrize("shift, expected", [(-0.4, 1), (0.0, 4), (0.05, 4)])
def test_epochs_to_95_final_test_follows_the_test_curve(tmp_path, shift, expected):
    """Shifting the test curve moves the answer; the train curve is unchanged (its answer stays 3).

    shift -0.4: final 0.50, 95% = 0.475; epoch 1 (0.45) misses, epoch 2 (0.10) misses, ...
    """
    test_acc = np.add(TEST_ACC, shift)[1:]
    target = 0.95 * test_acc[-1]
    by_hand = 1 + int(np.flatnonzero(test_acc >= target)[0])
    row = analysis.load([write_job(tmp_path / "job", test_shift=shift)]).runs.iloc[0]
    assert row["epochs_to_95_final_test"] == by_hand
    assert row["epochs_to_95_peak_train"] == 3


def test_configs_table_is_mean_and_sample_std_over_seeds(tmp_path):
    """Two seeds of he_normal and one of xavier_normal: one row per init, mean ± std (n)."""
    write_job(tmp_path / "a", seed=0, init="he_normal", test_shift=0.0)
    write_job(tmp_path / "b", seed=1, init="he_normal", test_shift=0.04)
    write_job(tmp_path / "c", seed=0, init="xavier_normal", test_shift=-0.1)
    tables = analysis.load([tmp_path])
    configs = report.configurations(tables).set_index("init")
    assert sorted(configs.index) == ["he_normal", "xavier_normal"]
    he = configs.loc["he_normal"]
    assert he["runs"] == 2
    finals = np.array([0.90, 0.94])
    assert he["final test acc"] == f"{finals.mean():.3f} ± {finals.std(ddof=1):.3f} (n=2)"
    assert he["final train acc"] == "0.980 ± 0.000 (n=2)"
    assert configs.loc["xavier_normal", "final test acc"] == "0.800"
    assert configs.loc["xavier_normal", "epochs to 95% final test"] == "4.0"


# --- theory columns of real jobs against independent computations ---------------------------------
def gauss(f, q: float) -> float:
    """E[f(sqrt(q) z)], z ~ N(0, 1), by adaptive quadrature (not the code's fixed rule)."""
    s = math.sqrt(q)
    value, _ = integrate.quad(lambda z: f(s * z) * math.exp(-0.5 * z * z), -40, 40, limit=400,
                              epsabs=1e-14, epsrel=1e-12)
    return value / math.sqrt(2 * math.pi)


def tanh_fixed_point(sigma_w2: float, sigma_b2: float) -> float:
    """Iterate the length map to convergence from q = 1 (ordered phase: a contraction)."""
    q = 1.0
    for _ in range(500):
        q_next = sigma_w2 * gauss(lambda h: math.tanh(h) ** 2, q) + sigma_b2
        if abs(q_next - q) < 1e-15:
            break
        q = q_next
    return q


def theory_row(tmp_path, *overrides: str) -> pd.Series:
    run_job(compose_config("dataset=digits", "depth=2", "model.width=16", "epochs=0", "probe_size=20",
                           "threads=1", "device=cpu", *overrides), tmp_path / "job")
    return analysis.load([tmp_path]).runs.iloc[0]


def test_relu_he_is_critical(tmp_path):
    """relu, He: chi1 = sigma_w^2 E[step(h)^2] = 2 * 1/2 = 1 for any q, so xi_c is infinite."""
    row = theory_row(tmp_path, "activation=relu", "init=he_normal")
    assert row["sigma_w2"] == pytest.approx(2.0, rel=1e-12)  # 2/fan_in * fan_in on square hidden layers
    assert row["chi1"] == pytest.approx(1.0, rel=1e-12) and row["xi_c"] == math.inf
    assert row["critical_sigma_w2"] == pytest.approx(2.0, rel=1e-12)
    assert math.isnan(row["q_star"])  # every q is a fixed point: the report says "any"
    table = report.theory_table(analysis.load([tmp_path]))
    assert table["q*"].tolist() == ["any"]  # the column was dropped when no run had a number in it


def test_relu_ordered_phase_closed_form(tmp_path):
    """relu, xavier (sigma_w^2 = 1) with bias std 0.3: q* = sigma_b^2 / (1 - sigma_w^2 / 2) = 0.18,
    chi1 = sigma_w^2 / 2 = 0.5, xi_c = -1/ln chi1 = 1/ln 2, and the length map's slope is chi1 too."""
    row = theory_row(tmp_path, "activation=relu", "init=xavier_normal", "model.bias_init=normal",
                     "model.bias_std=0.3")
    assert row["sigma_w2"] == pytest.approx(1.0, rel=1e-12) and row["sigma_b2"] == pytest.approx(0.09, rel=1e-12)
    assert row["q_star"] == pytest.approx(0.09 / 0.5, rel=1e-12)
    assert row["chi1"] == pytest.approx(0.5, rel=1e-12)
    assert row["xi_c"] == pytest.approx(1 / math.log(2), rel=1e-12)
    assert row["xi_q"] == pytest.approx(1 / math.log(2), rel=1e-12)


def test_tanh_ordered_phase_columns_by_quadrature(tmp_path):
    """tanh, sigma_w^2 = 16 * 0.25^2 = 1, sigma_b^2 = 0.3^2: ordered (chi1 < 1), q* > 0.

    q* by iterating the length map, chi1 = sigma_w^2 E[tanh'(h)^2] at q*, xi_c = -1/ln chi1,
    xi_q = -1/ln(sigma_w^2 dV/dq) at q* with dV/dq by a central difference of V(q) = E[tanh(h)^2].
    """
    row = theory_row(tmp_path, "activation=tanh", "init=normal", "init.std=0.25", "model.bias_init=normal",
                     "model.bias_std=0.3")
    sigma_w2, sigma_b2 = 16 * 0.25 ** 2, 0.09
    assert row["sigma_w2"] == pytest.approx(sigma_w2, rel=1e-12)
    assert row["sigma_b2"] == pytest.approx(sigma_b2, rel=1e-12)
    q_star = tanh_fixed_point(sigma_w2, sigma_b2)
    chi1 = sigma_w2 * gauss(lambda h: (1 - math.tanh(h) ** 2) ** 2, q_star)
    eps = 1e-4 * q_star
    slope = sigma_w2 * (gauss(lambda h: math.tanh(h) ** 2, q_star + eps)
                        - gauss(lambda h: math.tanh(h) ** 2, q_star - eps)) / (2 * eps)
    assert 0.5 < chi1 < 1
    # measured agreement: q*, chi1, xi_c to 1e-14, xi_q to 3e-9 (the central difference's error);
    # allowed: 1e-9 and 1e-7, far below any change of formula
    assert row["q_star"] == pytest.approx(q_star, rel=1e-9)
    assert row["chi1"] == pytest.approx(chi1, rel=1e-9)
    assert row["xi_c"] == pytest.approx(-1 / math.log(chi1), rel=1e-9)
    assert row["xi_q"] == pytest.approx(-1 / math.log(slope), rel=1e-7)
