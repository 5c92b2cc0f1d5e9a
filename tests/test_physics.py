"""Signal propagation at initialization in wide, deep MLPs: the textbook regimes show up.

Width 512, depth 30, Gaussian inputs; the model and inits are initlab's, the statistics come from
``probe_statistics`` (whose numbers test_statistics.py checks against NumPy).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special

from conftest import compose_config
from initlab.choices import build_activation
from initlab.config import to_experiment
from initlab.inits import initialize
from initlab.models import MLP
from initlab.measure.probes import probe_statistics
from initlab.records import PROBE_COLUMNS

WIDTH, DEPTH, IN, CLASSES, N = 512, 30, 100, 10, 256
COL = {c: i for i, c in enumerate(PROBE_COLUMNS)}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic timing on a shared 2-core machine
    yield
    torch.set_num_threads(threads)


def statistics_at_init(*overrides: str, seed: int = 0) -> np.ndarray:
    exp = to_experiment(compose_config(*overrides))
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(N, IN, generator=g)
    y = torch.randint(0, CLASSES, (N,), generator=g)
    torch.manual_seed(seed)
    model = MLP(IN, CLASSES, WIDTH, DEPTH, build_activation(exp.activation))
    initialize(model, exp.init, exp.model)
    return probe_statistics(model, exp.activation.name, x, y).values.numpy()


def hidden(stats: np.ndarray, column: str) -> np.ndarray:
    return stats[:DEPTH, COL[column]]


def log_slope(values: np.ndarray, first_layer: int = 2) -> float:
    """Least-squares slope of log(values) against the layer index, from ``first_layer`` on."""
    layers = np.arange(1, len(values) + 1)
    keep = layers >= first_layer
    return float(np.polyfit(layers[keep], np.log(values[keep]), 1)[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relu_he_normal_preserves_the_signal(seed):
    s = statistics_at_init("activation=relu", "init=he_normal", seed=seed)
    act_std = hidden(s, "act_std")
    assert act_std.max() / act_std.min() < 2.0, act_std  # within a factor 2 over 30 layers
    assert 0.5 < act_std[-1] / act_std[0] < 2.0
    assert abs(log_slope(act_std)) < 0.02  # no exponential trend (xavier's is -0.35 per layer)
    # the mean-field map one layer at a time: E[h_{l+1}^2] = 2 * E[a_l^2] for Var(W) = 2/fan_in
    # (finite width: each layer's ratio fluctuates by ~sqrt(2/512) = 6%, their mean by ~1%)
    second_moment = hidden(s, "act_std") ** 2 + hidden(s, "act_mean") ** 2
    ratio = hidden(s, "preact_sq")[1:] / (2 * second_moment[:-1])
    np.testing.assert_allclose(ratio, 1.0, atol=0.25)
    assert ratio.mean() == pytest.approx(1.0, abs=0.05)
    # ReLU of a symmetric pre-activation: E[relu(h)^2] = E[h^2] / 2, half the units are off (per
    # layer only roughly: deep inputs grow correlated, so units' pre-activations get offsets)
    half = second_moment / hidden(s, "preact_sq")
    np.testing.assert_allclose(half, 0.5, atol=0.15)
    assert half.mean() == pytest.approx(0.5, abs=0.03)
    np.testing.assert_allclose(hidden(s, "frac_zero"), 0.5, atol=0.15)
    assert hidden(s, "frac_zero").mean() == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relu_xavier_normal_decays_by_sqrt_half_per_layer(seed):
    s = statistics_at_init("activation=relu", "init=xavier_normal", seed=seed)
    act_std = hidden(s, "act_std")
    # Var(W) = 2/(512+512) = 1/512: each layer multiplies E[h^2] by 512 * (1/512) * 1/2
    assert log_slope(act_std) == pytest.approx(math.log(math.sqrt(0.5)), abs=0.03)
    assert log_slope(hidden(s, "preact_std")) == pytest.approx(math.log(math.sqrt(0.5)), abs=0.03)
    assert act_std[-1] < 1e-3 * act_std[0]


def test_tanh_small_normal_init_collapses():
    s = statistics_at_init("activation=tanh", "init=normal", "init.std=0.01")
    act_std = hidden(s, "act_std")
    assert np.all(np.diff(act_std) < 0)
    assert act_std[-1] < 1e-15 and act_std[0] > 1e-2
    # near 0 tanh is the identity: each layer scales the std by sqrt(512 * 0.01^2) = 0.226
    assert log_slope(act_std) == pytest.approx(math.log(math.sqrt(WIDTH * 0.01 ** 2)), abs=0.02)
    assert np.all(hidden(s, "frac_saturated") == 0)
    # backward signals vanish too: deep layers' gradients are orders of magnitude below the output layer's
    assert s[0, COL["delta_rms"]] < 1e-10 * s[DEPTH, COL["delta_rms"]]
    assert log_slope(hidden(s, "delta_rms")[::-1]) == pytest.approx(math.log(math.sqrt(WIDTH * 0.01 ** 2)), abs=0.02)


def test_tanh_large_normal_init_saturates():
    s = statistics_at_init("activation=tanh", "init=normal", "init.std=0.5")  # sigma_w^2 * n = 128
    saturated = hidden(s, "frac_saturated")
    assert np.all(saturated[1:] > 0.7)
    # pre-activations are Gaussian with second moment q: P(|tanh h| > 0.99) = erfc(atanh(0.99) / sqrt(2q))
    expected = special.erfc(math.atanh(0.99) / np.sqrt(2 * hidden(s, "preact_sq")))
    np.testing.assert_allclose(saturated[1:], expected[1:], atol=0.03)
    assert s[DEPTH, COL["frac_saturated"]] == 0.0  # the output layer has no activation


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_zero_init_gives_zero_hidden_activations_and_gradients(activation):
    s = statistics_at_init(f"activation={activation}", "init=zero")
    for column in ("preact_mean", "preact_std", "preact_sq", "act_mean", "act_std", "weight_norm",
                   "grad_norm", "bias_grad_norm", "delta_rms"):
        assert np.all(hidden(s, column) == 0.0), column
    assert np.all(hidden(s, "frac_zero") == 1.0)
    out = s[DEPTH]
    # logits are all zero, so softmax is uniform: the output bias still gets (1/C - onehot) gradients,
    # the output weights none (their input is zero)
    assert out[COL["act_std"]] == 0 and out[COL["weight_norm"]] == 0 and out[COL["grad_norm"]] == 0
    assert out[COL["bias_grad_norm"]] > 0 and out[COL["delta_rms"]] > 0
    # d(mean CE)/d(logits) = (1/C - onehot)/N: per row C-1 entries 1/C and one 1/C - 1, over N
    expected_delta_rms = math.sqrt(((CLASSES - 1) * (1 / CLASSES) ** 2 + (1 - 1 / CLASSES) ** 2) / CLASSES) / N
    assert out[COL["delta_rms"]] == pytest.approx(expected_delta_rms, rel=1e-6)
