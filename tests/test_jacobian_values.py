"""jacobian.csv and jacobian_sv.csv by value: explicit NumPy products, SVDs and closed forms.

Real jobs write the files; here every Jacobian is rebuilt as the explicit float64 product of
weight matrices and diag(phi'(h)) on the job's own probe inputs (initial weights rebuilt from the
seed, trained ones read from the checkpoint), its singular values taken with NumPy's SVD, and
every summary column recomputed. ``mean_sq_sv_pred`` is compared with an independent product of
the per-layer backward gains chi^(l), computed here by adaptive quadrature (tanh) or in
closed form (relu: chi = sigma_w^2 / 2).

Tolerances: torch differentiates in float32; the singular values agree with the float64 product
to 2.2e-7 of the largest one (measured), so 1e-5 of the largest is allowed. The prediction is a
deterministic function of the probe batch: adaptive quadrature and the code's own rule agree to
6e-9 relative (measured), and 1e-6 is allowed, while one layer too many or too few changes it by
a factor chi^(l) (tanh job: +2.5% / +4.5%; relu: 0.685 or 1.3).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from conftest import compose_config, read_csv, run_job
from initlab.config import to_experiment
from initlab.data import load_data
from initlab.train.job import _probe_batch
from initlab.measure.jacobian import probe_count
from initlab.records import JACOBIAN_COLUMNS, JACOBIAN_SV_COLUMNS
from test_statistics import NP_ACTIVATIONS, params_from_state, params_of, rebuild_initial_model

QUANTILES = {"sv_q05": 0.05, "sv_q25": 0.25, "sv_q50": 0.5, "sv_q75": 0.75, "sv_q95": 0.95}


def np_jacobians(params, act: str, x: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Per input: d h^depth / d h^1 (hidden) and d logits / d x (input_output), explicit products."""
    f, fprime = NP_ACTIVATIONS[act]
    out = {"hidden": [], "input_output": []}
    for v in x.reshape(len(x), -1):  # the MLP flattens images
        (W1, b1), hidden, (Wo, _) = params[0], params[1:-1], params[-1]
        h = W1 @ v + b1
        jac_h, jac_io = np.eye(len(h)), W1
        for W, b in hidden:
            step = W @ np.diag(fprime(h))
            jac_h, jac_io = step @ jac_h, step @ jac_io
            h = W @ f(h) + b
        out["hidden"].append(jac_h)
        out["input_output"].append(Wo @ np.diag(fprime(h)) @ jac_io)
    return out


def np_summary(sv: np.ndarray) -> dict[str, float]:
    """The jacobian.csv columns from a (inputs, k) array of singular values (pooled, population)."""
    flat, sq = sv.ravel(), sv.ravel() ** 2
    row = {"n_inputs": sv.shape[0], "n_sv": sv.shape[1], "mean_sq_sv": sq.mean(), "var_sq_sv": sq.var(),
           "sv_min": flat.min(), "sv_max": flat.max(), "sv_std": flat.std()}
    row.update({col: np.quantile(flat, q, method="linear") for col, q in QUANTILES.items()})
    return row


def gauss(f, q: float) -> float:
    """E[f(sqrt(q) z)], z ~ N(0, 1), by adaptive quadrature (scipy's QUADPACK, not the code's rule).

    Gauss-Hermite would be the obvious choice, but for tanh at q ~ 9 it converges to only ~2e-3.
    """
    s = math.sqrt(q)
    value, _ = integrate.quad(lambda z: f(s * z) * math.exp(-0.5 * z * z), -40, 40, limit=400,
                              epsabs=1e-13, epsrel=1e-11)
    return value / math.sqrt(2 * math.pi)


def tanh_gain_product(sigma_w2_first: float, sigma_w2: float, q0: np.ndarray, depth: int) -> float:
    """Mean over probe examples of prod_{l=1}^{depth-1} sigma_w^2 E[tanh'(h^l)^2] (no biases)."""
    products = []
    for q in sigma_w2_first * q0:
        product = 1.0
        for _ in range(depth - 1):
            product *= sigma_w2 * gauss(lambda h: (1 - math.tanh(h) ** 2) ** 2, q)
            q = sigma_w2 * gauss(lambda h: math.tanh(h) ** 2, q)
        products.append(product)
    return float(np.mean(products))


def check_rows(job_dir, exp, data, epoch: int, params) -> None:
    """Both kinds at ``epoch``: summaries and every singular value against NumPy."""
    x, _ = _probe_batch(data, exp.probe_size, exp.seed)
    n = min(probe_count(exp.model.width), len(x))
    jacs = np_jacobians(params, exp.activation.name, x[:n].double().numpy())
    summary = [r for r in read_csv(job_dir / "jacobian.csv") if int(r["epoch"]) == epoch]
    values = [r for r in read_csv(job_dir / "jacobian_sv.csv") if int(r["epoch"]) == epoch]
    assert sorted(r["kind"] for r in summary) == ["hidden", "input_output"]
    for row in summary:
        kind = row["kind"]
        sv = np.array([np.linalg.svd(j, compute_uv=False) for j in jacs[kind]])
        expected_shape = (n, exp.model.width) if kind == "hidden" else (n, min(data.n_features, data.n_classes))
        assert sv.shape == expected_shape
        scale = sv.max()
        got = np.array([float(r["sv"]) for r in values if r["kind"] == kind])
        np.testing.assert_allclose(got, sv.ravel(), rtol=0, atol=1e-5 * scale, err_msg=f"{kind} epoch {epoch}")
        for col, want in np_summary(sv).items():
            # squares scale as scale^2; counts exactly
            tol = 0 if col.startswith("n_") else 1e-5 * (scale ** 2 if "sq" in col else scale)
            assert float(row[col]) == pytest.approx(want, abs=tol), f"{kind} epoch {epoch} {col}"


@pytest.fixture(scope="module")
def tanh_job(tmp_path_factory):
    """tanh, sigma_w^2 = 16 * 0.35^2 = 1.96 (chaotic), 4 epochs with the spectrum every 2."""
    overrides = ["dataset=digits", "activation=tanh", "init=normal", "init.std=0.35", "depth=4", "model.width=16",
                 "epochs=4", "jacobian_every=2", "probe_size=40", "seed=2", "batch_size=64",
                 "optimizer.lr=0.05", "threads=1", "device=cpu", "checkpoint=last"]
    cfg = compose_config(*overrides)
    job_dir = tmp_path_factory.mktemp("jac")
    run_job(cfg, job_dir)
    exp = to_experiment(cfg)
    return job_dir, exp, load_data(exp.dataset)


def test_jacobian_every_sets_the_epochs_and_the_columns(tanh_job):
    job_dir, exp, _ = tanh_job
    rows = read_csv(job_dir / "jacobian.csv")
    assert list(rows[0]) == [*JACOBIAN_COLUMNS, "attempt"]
    assert [(int(r["epoch"]), r["kind"]) for r in rows] == [
        (e, k) for e in (0, 2, 4) for k in ("input_output", "hidden")]
    assert list(read_csv(job_dir / "jacobian_sv.csv")[0]) == [*JACOBIAN_SV_COLUMNS, "attempt"]
    # 40 probe inputs, width 16: probe_count caps at 32 (2048 // 16 = 128)
    assert {int(r["n_inputs"]) for r in rows} == {32}
    svs = read_csv(job_dir / "jacobian_sv.csv")
    assert len(svs) == 3 * 32 * (16 + 10)


def test_jacobian_at_init_matches_numpy(tanh_job):
    job_dir, exp, data = tanh_job
    check_rows(job_dir, exp, data, 0, params_of(rebuild_initial_model(exp, data)))


def test_jacobian_after_training_matches_numpy(tanh_job):
    job_dir, exp, data = tanh_job
    state = torch.load(job_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 4
    check_rows(job_dir, exp, data, 4, params_from_state(state["model"], exp.depth))


def test_prediction_is_the_product_of_the_backward_gains_tanh(tanh_job):
    job_dir, exp, data = tanh_job
    rows = read_csv(job_dir / "jacobian.csv")
    predicted = {(int(r["epoch"]), r["kind"]): r["mean_sq_sv_pred"] for r in rows}
    assert [k for k, v in predicted.items() if v != ""] == [(0, "hidden")], "epoch 0, hidden only"
    x, _ = _probe_batch(data, exp.probe_size, exp.seed)
    n = probe_count(exp.model.width)
    assert n < len(x)
    q0 = x[:n].double().flatten(1).pow(2).mean(dim=1).numpy()  # the inputs the Jacobian is measured on
    std2 = exp.init.std ** 2
    want = tanh_gain_product(data.n_features * std2, exp.model.width * std2, q0, exp.depth)
    assert float(predicted[0, "hidden"]) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("factor, depth", [(1.37, 4), (2.6, 3)])
def test_prediction_relu_closed_form(tmp_path, factor, depth):
    """relu, He with sigma_w^2 = factor: chi = factor / 2 in every layer, whatever q."""
    cfg = compose_config("dataset=digits", "activation=relu", "init=he_normal", f"init.factor={factor}",
                         f"depth={depth}", "model.width=24", "epochs=0", "probe_size=20", "threads=1", "device=cpu")
    run_job(cfg, tmp_path)
    row = [r for r in read_csv(tmp_path / "jacobian.csv") if r["kind"] == "hidden"][0]
    assert float(row["mean_sq_sv_pred"]) == pytest.approx((factor / 2) ** (depth - 1), rel=1e-9)
    assert int(row["n_inputs"]) == 20  # fewer probe inputs than probe_count(24) = 32
