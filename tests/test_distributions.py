"""distributions.csv by value (numpy.quantile, numpy.histogram) and, with steps.csv, in mlp, cnn and transformer jobs.

The quantiles of initlab.measure.distributions sort on the device (no subsampling); the
reference is numpy.quantile's default (linear) method on the finite entries; the histogram's is
numpy.histogram of the finite entries clipped into [-4, 4], as fractions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import compose_config, read_csv, read_json, run_job
from initlab.config import to_experiment
from initlab.data import load_data
from initlab.measure.distributions import (BINS, HIST_HI, HIST_LO, QUANTILE_STATS, QUANTILES, distribution_rows,
                                           finite_histogram, finite_quantiles)
from initlab.models import build_model
from initlab.models.sites import probing
from initlab.records import DISTRIBUTIONS_COLUMNS, STEPS_COLUMNS
from test_every_model_job import CASES, COMMON


def np_quantiles(t: torch.Tensor) -> np.ndarray:
    v = t.detach().double().numpy().ravel()
    v = v[np.isfinite(v)]
    return np.quantile(v, QUANTILES) if len(v) else np.full(len(QUANTILES), np.nan)


def np_histogram(t: torch.Tensor) -> np.ndarray:
    v = t.detach().double().numpy().ravel()
    v = v[np.isfinite(v)]
    counts, _ = np.histogram(np.clip(v, HIST_LO, HIST_HI), bins=BINS, range=(HIST_LO, HIST_HI))
    return counts / len(v)


def _with_non_finite(shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g) * 3
    flat = t.view(-1)
    flat[torch.randperm(flat.numel(), generator=g)[: flat.numel() // 10]] = math.nan
    flat[torch.randperm(flat.numel(), generator=g)[: flat.numel() // 20]] = math.inf
    flat[torch.randperm(flat.numel(), generator=g)[: flat.numel() // 20]] = -math.inf
    return t


@pytest.mark.parametrize("shape", [(1,), (2,), (7, 3), (50, 4, 5, 5), (40, 6, 8)])
def test_quantiles_and_histogram_equal_numpy_on_the_finite_entries(shape):
    t = _with_non_finite(shape, seed=sum(shape))
    np.testing.assert_allclose(finite_quantiles(t).numpy(), np_quantiles(t), rtol=1e-12, atol=1e-12)
    if np.isfinite(t.numpy()).any():
        np.testing.assert_allclose(finite_histogram(t).numpy(), np_histogram(t), rtol=0, atol=1e-15)
        assert finite_histogram(t).sum().item() == pytest.approx(1.0)


def test_a_tensor_without_finite_entries_gives_no_values():
    t = torch.tensor([math.nan, math.inf, -math.inf])
    assert torch.isnan(finite_quantiles(t)).all() and torch.isnan(finite_histogram(t)).all()
    assert torch.isnan(finite_quantiles(torch.zeros(0))).all()


def test_values_beyond_the_range_fall_in_the_end_bins():
    hist = finite_histogram(torch.tensor([-100.0, -4.0, 3.99, 4.0, 100.0, 0.0]))
    assert hist[0].item() == pytest.approx(2 / 6) and hist[-1].item() == pytest.approx(3 / 6)
    assert hist[BINS // 2].item() == pytest.approx(1 / 6)


@pytest.mark.slow
def test_quantiles_of_more_entries_than_older_torch_quantile_takes():
    """Above 2**24 entries (torch.quantile's limit in the torch versions that have one)."""
    t = torch.randn(2 ** 24 + 3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(finite_quantiles(t).numpy(), np_quantiles(t), rtol=1e-12)


@pytest.mark.parametrize("case", ["mlp", "cnn", "transformer"])
def test_rows_hold_every_sites_quantiles_and_histogram(case):
    """distribution_rows against numpy on the tensors ``probing`` hands back independently."""
    exp = to_experiment(compose_config(*COMMON, *CASES[case]))
    data = load_data(exp.dataset)
    torch.manual_seed(0)
    model = build_model(exp, data)
    x = data.x_train[:16]
    rows = distribution_rows(model, x, epoch=4)
    model.eval()  # no BatchNorm here: the probe pass is eval mode (dropout off)
    with torch.no_grad(), probing(model, shifts=False) as probe:
        model(x)
    params = dict(model.named_parameters())
    got = {(r["site"], r["tensor"], r["stat"], r["bin_lo"]): r["value"] for r in rows}  # bin_lo: distinct hist keys
    assert len(got) == len(rows) and {r["epoch"] for r in rows} == {4}
    for tap in probe.taps.values():
        tensors = {"preact": tap.pre, "act": tap.post}
        if tap.weight is not None:
            tensors["weight"] = params[tap.weight]
        for name, t in tensors.items():
            want = np_quantiles(t)
            np.testing.assert_allclose([got[(tap.site, name, s, None)] for s in QUANTILE_STATS], want,
                                       rtol=1e-12, atol=1e-12, err_msg=f"{tap.site} {name}")
        hist = [r for r in rows if r["site"] == tap.site and r["stat"] == "hist"]
        edges = np.linspace(HIST_LO, HIST_HI, BINS + 1)
        np.testing.assert_allclose([r["bin_lo"] for r in hist], edges[:-1], atol=1e-12)
        np.testing.assert_allclose([r["bin_hi"] for r in hist], edges[1:], atol=1e-12)
        np.testing.assert_allclose([r["value"] for r in hist], np_histogram(tap.post), atol=1e-15, err_msg=tap.site)
    named = {t.weight for t in probe.taps.values() if t.weight is not None}
    weight_rows = [r for r in rows if r["kind"] == "weight"]
    for r in weight_rows:
        assert f"{r['site']}.weight" not in named and r["tensor"] == "weight"
    n_sites = len(probe.taps)
    assert len(rows) == 7 * (2 * n_sites + len(named) + len(weight_rows) // 7) + BINS * n_sites


@pytest.mark.parametrize("case", ["mlp", "cnn-residual", "transformer"])
def test_a_job_writes_steps_and_distributions_for_its_sites(tmp_path, case):
    """Through the real job, with loss=mse: distributions at epochs 0 and 2 (every 2 of 3),
    one steps.csv row per step and measured weight, sites and layers as layers.csv has them."""
    result = run_job(compose_config(*COMMON, *CASES[case], "epochs=3", "loss=mse", "log_every_steps=1",
                                    "distributions_every=2"), tmp_path)
    assert result["status"] == "completed"
    layers = [r for r in read_csv(tmp_path / "layers.csv") if r["epoch"] == "0"]
    dist = read_csv(tmp_path / "distributions.csv")
    steps = read_csv(tmp_path / "steps.csv")
    assert tuple(dist[0]) == DISTRIBUTIONS_COLUMNS + ("attempt",) and tuple(steps[0]) == STEPS_COLUMNS + ("attempt",)
    assert result["rows"]["distributions.csv"] == len(dist) and result["rows"]["steps.csv"] == len(steps)
    assert sorted({int(r["epoch"]) for r in dist}) == [0, 2]
    where = {(r["site"], r["kind"], r["index"], r["layer"]) for r in layers}
    assert {(r["site"], r["kind"], r["index"], r["layer"]) for r in dist} == where
    for epoch in (0, 2):
        hist = [float(r["value"]) for r in dist if int(r["epoch"]) == epoch and r["stat"] == "hist"]
        assert sum(hist) == pytest.approx(len(hist) / BINS)  # each site's bins sum to 1
    weighted = [(r["site"], r["layer"], r["bias_grad_norm"] == "") for r in layers if r["weight_norm"] != ""]
    assert case != "cnn-residual" or any(no_bias for *_, no_bias in weighted), "the 1x1 skip conv has no bias"
    n_steps = 3 * -(-int(result["data"]["n_train"]) // int(result["choices"]["batch_size"]))
    assert len(steps) == n_steps * len(weighted)
    for i in range(0, len(steps), len(weighted)):  # no bias: empty, as in layers.csv
        assert [(r["site"], r["layer"], r["bias_grad_norm"] == "") for r in steps[i:i + len(weighted)]] == weighted
    assert all(math.isfinite(float(r["loss"])) and float(r["grad_norm"]) > 0 for r in steps)
    assert {r["attempt"] for r in steps + dist} == {"0"}
    assert read_json(tmp_path / "result.json")["choices"]["loss"] == "mse"
