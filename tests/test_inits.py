"""Weight and bias inits: tensor for tensor against torch.nn.init under the same seed, and the
distributions' moments, bounds and structure against their definitions on large tensors.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from conftest import compose_config
from initlab.config import to_experiment
from initlab.choices import INITS
from initlab.inits import initialize
from initlab.models import MLP

SHAPES = [(64, 48), (48, 64), (10, 32)]  # (out, in): fan_in != fan_out both ways, and an output-layer shape


@functools.lru_cache(maxsize=None)
def init_cfg(*overrides: str):
    """Composed through Hydra (cached: composing is deterministic and the result is not mutated)."""
    exp = to_experiment(compose_config(*overrides))
    return exp.init, exp.model


def ours(init, shape, seed=123) -> torch.Tensor:
    w = torch.empty(shape)
    torch.manual_seed(seed)
    INITS[init.name].fill(w, init)
    return w


def reference(fill, shape, seed=123) -> torch.Tensor:
    w = torch.empty(shape)
    torch.manual_seed(seed)
    fill(w)
    return w


def leaky_slope_for(factor: float) -> float:
    """kaiming_*_(nonlinearity='leaky_relu', a) has gain^2 = 2 / (1 + a^2); solve gain^2 = factor."""
    return math.sqrt(2.0 / factor - 1.0)


# (overrides, the matching torch.nn.init call)
SAME_SEED_CASES = [
    (["init=he_normal"], lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")),
    (["init=he_normal", "init.mode=fan_out"], lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")),
    (["init=he_normal", "init.factor=0.5"],
     lambda w: nn.init.kaiming_normal_(w, a=leaky_slope_for(0.5), mode="fan_in", nonlinearity="leaky_relu")),
    (["init=he_normal", "init.factor=1", "init.mode=fan_out"],
     lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="linear")),
    (["init=he_uniform"], lambda w: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu")),
    (["init=he_uniform", "init.mode=fan_out", "init.factor=0.5"],
     lambda w: nn.init.kaiming_uniform_(w, a=leaky_slope_for(0.5), mode="fan_out", nonlinearity="leaky_relu")),
    (["init=lecun_normal"], lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="linear")),
    (["init=lecun_uniform"], lambda w: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="linear")),
    (["init=xavier_normal"], lambda w: nn.init.xavier_normal_(w)),
    (["init=xavier_normal", "init.gain=2.5"], lambda w: nn.init.xavier_normal_(w, gain=2.5)),
    (["init=xavier_uniform"], lambda w: nn.init.xavier_uniform_(w)),
    (["init=xavier_uniform", "init.gain=0.3"], lambda w: nn.init.xavier_uniform_(w, gain=0.3)),
    (["init=orthogonal"], lambda w: nn.init.orthogonal_(w)),
    (["init=orthogonal", "init.gain=1.7"], lambda w: nn.init.orthogonal_(w, gain=1.7)),
    (["init=normal"], lambda w: nn.init.normal_(w, 0.0, 0.1)),
    (["init=normal", "init.std=0.02"], lambda w: nn.init.normal_(w, 0.0, 0.02)),
    (["init=trunc_normal"], lambda w: nn.init.trunc_normal_(w, 0.0, 0.1, -2.0, 2.0)),
    (["init=trunc_normal", "init.mean=0.5", "init.std=1", "init.a=0", "init.b=1"],
     lambda w: nn.init.trunc_normal_(w, 0.5, 1.0, 0.0, 1.0)),
    (["init=zero"], lambda w: nn.init.zeros_(w)),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("overrides,fill", SAME_SEED_CASES, ids=[" ".join(o) for o, _ in SAME_SEED_CASES])
def test_init_matches_torch_nn_init_under_the_same_seed(overrides, fill, shape):
    init, _ = init_cfg(*overrides)
    mine, theirs = ours(init, shape), reference(fill, shape)
    # The same random draws; the scale may be computed in a different order (sqrt(2/n) vs
    # sqrt(2)/sqrt(n)), so allow a few float32 ulps and nothing more.
    torch.testing.assert_close(mine, theirs, rtol=4e-7, atol=0.0)
    assert not torch.equal(ours(init, shape, seed=124), mine) or init.name == "zero"


# --- distributions against their definitions (large tensors) ---------------------------------------
BIG = (1000, 2000)  # out, in: 2e6 samples, so relative errors of variance estimates are ~1e-3


def moments(w: torch.Tensor) -> tuple[float, float]:
    a = w.double().numpy().ravel()
    return a.mean(), a.var()


@pytest.mark.parametrize("name,factor,mode", [
    ("he_normal", 2.0, "fan_in"), ("he_normal", 0.5, "fan_in"), ("he_normal", 4.0, "fan_out"),
    ("he_uniform", 2.0, "fan_in"), ("he_uniform", 0.5, "fan_out"), ("he_uniform", 4.0, "fan_in"),
])
def test_variance_scaling_moments_and_shape(name, factor, mode):
    init, _ = init_cfg(f"init={name}", f"init.factor={factor}", f"init.mode={mode}")
    w = ours(init, BIG)
    fan = BIG[1] if mode == "fan_in" else BIG[0]
    target_var = factor / fan
    mean, var = moments(w)
    assert abs(mean) < 5 * math.sqrt(target_var / w.numel())
    assert var == pytest.approx(target_var, rel=0.01)
    a = w.double().numpy().ravel() / math.sqrt(target_var)
    if name == "he_uniform":
        bound = math.sqrt(3.0)  # U(-b, b) with Var = b^2/3
        assert a.min() >= -bound * (1 + 1e-6) and a.max() <= bound * (1 + 1e-6)  # float32 rounding of b
        assert a.max() > bound * 0.999 and a.min() < -bound * 0.999
        assert stats.kurtosis(a, fisher=False) == pytest.approx(1.8, abs=0.01)  # uniform: 9/5
    else:
        assert stats.kurtosis(a, fisher=False) == pytest.approx(3.0, abs=0.03)  # Gaussian
        assert np.mean(np.abs(a) < 1) == pytest.approx(0.682689, abs=0.002)


@pytest.mark.parametrize("name,gain,var_of,bound_of", [
    ("lecun_normal", 1.0, lambda fi, fo: 1 / fi, None),
    ("lecun_uniform", 1.0, lambda fi, fo: 1 / fi, lambda fi, fo: math.sqrt(3 / fi)),
    ("xavier_normal", 1.0, lambda fi, fo: 2 / (fi + fo), None),
    ("xavier_normal", 3.0, lambda fi, fo: 2 / (fi + fo), None),
    ("xavier_uniform", 1.0, lambda fi, fo: 2 / (fi + fo), lambda fi, fo: math.sqrt(6 / (fi + fo))),
    ("xavier_uniform", 0.4, lambda fi, fo: 2 / (fi + fo), lambda fi, fo: math.sqrt(6 / (fi + fo))),
])
def test_lecun_and_xavier_moments(name, gain, var_of, bound_of):
    overrides = [f"init={name}"] + ([f"init.gain={gain}"] if name.startswith("xavier") else [])
    init, _ = init_cfg(*overrides)
    w = ours(init, BIG)
    fan_out, fan_in = BIG
    mean, var = moments(w)
    assert abs(mean) < 5 * gain * math.sqrt(var_of(fan_in, fan_out) / w.numel())
    assert var == pytest.approx(gain ** 2 * var_of(fan_in, fan_out), rel=0.01)
    if bound_of:
        bound = gain * bound_of(fan_in, fan_out)
        assert w.abs().max().item() <= bound * (1 + 1e-6)
        assert w.abs().max().item() > bound * 0.999


@pytest.mark.parametrize("std", [0.01, 0.1, 2.0])
def test_normal_moments(std):
    init, _ = init_cfg("init=normal", f"init.std={std}")
    mean, var = moments(ours(init, BIG))
    assert abs(mean) < 5 * std / math.sqrt(BIG[0] * BIG[1])
    assert math.sqrt(var) == pytest.approx(std, rel=0.005)


def test_zero_init_is_all_zeros():
    init, _ = init_cfg("init=zero")
    w = torch.randn(30, 40)
    INITS["zero"].fill(w, init)
    assert torch.count_nonzero(w) == 0


@pytest.mark.parametrize("shape", [(64, 256), (256, 256), (256, 64)])
@pytest.mark.parametrize("gain", [1.0, 0.5, 2.0])
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(shape, gain):
    init, _ = init_cfg("init=orthogonal", f"init.gain={gain}")
    w = ours(init, shape).double()
    rows, cols = shape
    gram = w @ w.T if rows <= cols else w.T @ w
    torch.testing.assert_close(gram, gain ** 2 * torch.eye(min(shape), dtype=torch.float64), atol=2e-5 * gain ** 2, rtol=0)
    # all singular values equal the gain
    s = torch.linalg.svdvals(w)
    torch.testing.assert_close(s, torch.full_like(s, gain), atol=1e-5 * gain, rtol=0)


@pytest.mark.parametrize("mean,std,a,b", [(0.5, 1.0, 0.0, 1.0), (0.0, 1.0, -0.5, 2.0), (0.0, 0.1, -2.0, 2.0)])
def test_trunc_normal_bounds_and_moments(mean, std, a, b):
    """a and b are absolute cut-offs; the moments are those of scipy's truncated normal."""
    init, _ = init_cfg("init=trunc_normal", f"init.mean={mean}", f"init.std={std}", f"init.a={a}", f"init.b={b}")
    w = ours(init, BIG).double().numpy().ravel()
    assert w.min() >= a and w.max() <= b
    ref = stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    assert w.mean() == pytest.approx(ref.mean(), abs=5 * ref.std() / math.sqrt(w.size))
    assert w.var() == pytest.approx(ref.var(), rel=0.01)
    # the shape inside the window follows the truncated density: compare deciles
    qs = np.linspace(0.1, 0.9, 9)
    np.testing.assert_allclose(np.quantile(w, qs), ref.ppf(qs), atol=0.005 * (b - a))


# --- through the model: every Linear, the output layer included, and the biases ----------------------
def build(overrides, in_features=20, n_classes=7, width=48, depth=3, seed=5):
    exp = to_experiment(compose_config(*overrides))
    torch.manual_seed(0)
    model = MLP(in_features, n_classes, width, depth, nn.ReLU())
    torch.manual_seed(seed)
    initialize(model, exp.init, exp.model)
    return model, exp


@pytest.mark.parametrize("overrides,fill", [
    (["init=he_normal", "init.mode=fan_out"], lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")),
    (["init=orthogonal", "init.gain=1.3"], lambda w: nn.init.orthogonal_(w, gain=1.3)),
    (["init=xavier_uniform"], lambda w: nn.init.xavier_uniform_(w)),
    (["init=trunc_normal", "init.std=0.3", "init.a=-0.2", "init.b=0.4"], lambda w: nn.init.trunc_normal_(w, 0, 0.3, -0.2, 0.4)),
])
def test_initialize_reaches_every_linear_in_order_with_zero_biases(overrides, fill):
    model, _ = build(overrides)
    layers = model.linears
    assert len(layers) == 4 and layers[-1] is model.out
    torch.manual_seed(5)
    for layer in layers:  # the same draws, layer after layer, with zero biases drawing nothing
        expected = torch.empty_like(layer.weight)
        fill(expected)
        torch.testing.assert_close(layer.weight, expected, rtol=4e-7, atol=0.0)
        assert torch.count_nonzero(layer.bias) == 0
    assert [m for m in model.modules() if isinstance(m, nn.Linear)] == layers


def test_output_layer_gets_the_init_too():
    model, _ = build(["init=zero"])
    assert all(torch.count_nonzero(layer.weight) == 0 for layer in model.linears)
    model, _ = build(["init=normal", "init.std=0.37"], in_features=300, n_classes=400, width=300, depth=2)
    for layer in model.linears:  # 9e4-1.2e5 draws each: std within 1%
        assert layer.weight.double().std().item() == pytest.approx(0.37, rel=0.01)


def test_bias_init_normal_draws_after_each_weight():
    model, _ = build(["init=he_normal", "model.bias_init=normal", "model.bias_std=0.25"])
    torch.manual_seed(5)
    for layer in model.linears:
        w, b = torch.empty_like(layer.weight), torch.empty_like(layer.bias)
        nn.init.kaiming_normal_(w, nonlinearity="relu")
        nn.init.normal_(b, 0.0, 0.25)
        torch.testing.assert_close(layer.weight, w, rtol=4e-7, atol=0.0)
        torch.testing.assert_close(layer.bias, b, rtol=0.0, atol=0.0)


@pytest.mark.parametrize("bias_std", [0.05, 1.5])
def test_bias_init_normal_distribution(bias_std):
    model, _ = build(["init=he_normal", "model.bias_init=normal", f"model.bias_std={bias_std}"],
                     in_features=10, n_classes=10, width=2000, depth=3)
    b = torch.cat([layer.bias.detach() for layer in model.linears]).double().numpy()
    assert b.size == 3 * 2000 + 10
    assert abs(b.mean()) < 5 * bias_std / math.sqrt(b.size)
    assert b.std() == pytest.approx(bias_std, rel=0.03)
    assert stats.kurtosis(b, fisher=False) == pytest.approx(3.0, abs=0.15)


def test_default_bias_is_zero_even_though_nn_linear_draws_nonzero_biases():
    torch.manual_seed(0)
    fresh = MLP(20, 7, 48, 3, nn.ReLU())
    assert all(torch.count_nonzero(layer.bias) > 0 for layer in fresh.linears)
    model, exp = build(["init=he_normal"])
    assert exp.model.bias_init.value == "zeros"
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in model.linears)
