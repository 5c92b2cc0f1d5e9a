"""Mean-field theory module: closed forms, quadrature, solvers, Monte-Carlo and reference numbers.

Reference values are those of docs/theory.md §9 (with their Monte-Carlo checks) and are quoted
with the digits given there; §8.5 lists the tolerances and why.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pytest
import torch
from scipy import integrate, special

from initlab import theory as T
from initlab.choices import gaussian
from initlab.choices.gaussian import normal_pdf

SIGMA_B2_SCHOENHOLZ = 0.05


def gauss_ref(f, q):
    """E f(sqrt(q) z) by adaptive quadrature, split at the kink z = 0."""
    def g(z):
        return f(math.sqrt(q) * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return sum(integrate.quad(g, lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0]
               for lo, hi in [(-np.inf, 0.0), (0.0, np.inf)])


def leaky(x, s):
    return np.where(x > 0, x, s * x)


def leaky_grad(x, s):
    return np.where(x > 0, 1.0, s)


# ----------------------------------------------------------------- closed forms and quadrature
@pytest.mark.parametrize("q", [1e-6, 0.3, 1.0, 7.0])
def test_relu_linear_leaky_one_input_closed_forms(q):
    relu, lin = T._resolve("relu"), T._resolve("linear")
    leak = T._resolve({"name": "leaky_relu", "negative_slope": 0.2})
    assert relu.second_moment(q) == pytest.approx(q / 2, rel=1e-15)
    assert relu.grad_moment(q) == 0.5
    assert relu.mean(q) == pytest.approx(math.sqrt(q / (2 * math.pi)), rel=1e-15)
    assert lin.second_moment(q) == pytest.approx(q)
    assert lin.grad_moment(q) == 1.0 and lin.mean(q) == 0.0
    assert leak.second_moment(q) == pytest.approx(gauss_ref(lambda x: leaky(x, 0.2) ** 2, q),
                                                  rel=1e-10)
    assert leak.grad_moment(q) == pytest.approx(gauss_ref(lambda x: leaky_grad(x, 0.2) ** 2, q))
    assert leak.mean(q) == pytest.approx(gauss_ref(lambda x: leaky(x, 0.2), q), rel=1e-10)
    # plain quadrature of relu is accurate for phi^2 (phi(0) = 0) though not for the jump in phi'^2
    quad_relu = T._resolve((lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)))
    assert quad_relu.second_moment(q) == pytest.approx(q / 2, rel=1e-12)


def _two_input_ref(s, q, c):
    """Leaky-relu E[phi phi] and E[phi' phi'] with the inner Gaussian integral done exactly."""
    root = math.sqrt(max(1 - c * c, 0.0)) * math.sqrt(q)

    def inner(m):  # E phi(m + root z), E phi'(m + root z)
        if root == 0:
            return leaky(m, s), leaky_grad(m, s)
        t = m / root
        relu_mean = m * special.ndtr(t) + root * math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
        return (1 - s) * relu_mean + s * m, (1 - s) * special.ndtr(m / root) + s

    k = gauss_ref(lambda x: leaky(x, s) * inner(c * x)[0], q)
    dk = gauss_ref(lambda x: leaky_grad(x, s) * inner(c * x)[1], q)
    return k, dk


@pytest.mark.parametrize("s", [0.0, 0.2, 1.0])
@pytest.mark.parametrize("c", [-0.6, 0.0, 0.5, 0.97, 1.0])
def test_piecewise_linear_two_input_closed_forms(s, c):
    act, q = T._resolve({"name": "leaky_relu", "negative_slope": s}), 1.7
    k, dk = _two_input_ref(s, q, c)
    assert act.kernel(q, c) == pytest.approx(k, rel=1e-9, abs=1e-12)
    assert act.grad_kernel(q, c) == pytest.approx(dk, rel=1e-9, abs=1e-12)


def _elu_two_input_ref(alpha, scale, q, c):
    """ELU's E[phi phi] and E[phi' phi'] with the inner Gaussian integral done exactly (x ~ N(m, v):
    E[x; x > 0] = m Phi(m/sd) + sd pdf(m/sd), E[e^x; x < 0] = e^{m + v/2} Phi(-(m + v)/sd))."""
    sd = math.sqrt(max(1 - c * c, 0.0)) * math.sqrt(q)

    def phi(x):
        return scale * (x if x > 0 else alpha * math.expm1(x))

    def dphi(x):
        return scale * (1.0 if x > 0 else alpha * math.exp(x))

    def inner(m):
        if sd == 0:
            return phi(m), dphi(m)
        tilt = math.exp(m + sd * sd / 2 + special.log_ndtr(-(m + sd * sd) / sd))
        positive = m * special.ndtr(m / sd) + sd * normal_pdf(m / sd)
        return (scale * (positive + alpha * (tilt - special.ndtr(-m / sd))),
                scale * (special.ndtr(m / sd) + alpha * tilt))

    return (gauss_ref(lambda x: phi(x) * inner(c * x)[0], q), gauss_ref(lambda x: dphi(x) * inner(c * x)[1], q))


@pytest.mark.parametrize("name,alpha,scale", [("elu", 0.5, 1.0), ("elu", 1.0, 1.0),
                                              ("selu", 1.6732632423543772, 1.0507009873554805)])
@pytest.mark.parametrize("c", [-1.0, -0.6, 0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("q", [0.3, 1.7])
def test_elu_two_input_kernels_match_the_exact_inner_integral(name, alpha, scale, c, q):
    """selu's E[phi'(u_a) phi'(u_b)] came from a trapezoid grid across phi''s jump at 0: 0.98202
    for 0.97068 at c = 0 (q = 1), so xi_c was 41.5 for 33.6 (below); now split at the kink."""
    act = T._resolve({"name": name, "alpha": alpha} if name == "elu" else name)
    k, dk = _elu_two_input_ref(alpha, scale, q, c)
    assert act.kernel(q, c) == pytest.approx(k, rel=1e-9, abs=1e-12)
    assert act.grad_kernel(q, c) == pytest.approx(dk, rel=1e-9, abs=1e-12)


def test_selu_xi_c_at_lecun_init_is_the_closed_form():
    """sigma_w^2 = 1, sigma_b^2 = 0: q* = 1 and c* = 0, so chi_c = (E selu'(z))^2 exactly, and
    xi_c = -1 / ln chi_c = 33.604 (was 41.49)."""
    lam, alpha = 1.0507009873554805, 1.6732632423543772
    mean_grad = lam * (0.5 + alpha * math.exp(0.5) * special.ndtr(-1.0))
    assert T.fixed_point("selu", 1.0) == pytest.approx(1.0, rel=1e-9)
    assert T.depth_scales("selu", 1.0)[1] == pytest.approx(-1 / math.log(mean_grad**2), rel=1e-8)
    assert T.depth_scales("selu", 1.0)[1] == pytest.approx(33.604342, rel=1e-7)


def test_relu_hand_values_and_arc_cosine_map():
    relu = T._resolve("relu")
    assert relu.kernel(2.0, 0.0) == pytest.approx(2.0 / (2 * math.pi))
    assert relu.kernel(2.0, 1.0) == pytest.approx(1.0)
    assert relu.grad_kernel(2.0, 0.0) == pytest.approx(0.25)
    assert relu.grad_kernel(2.0, 1.0) == pytest.approx(0.5)
    # with sigma_b = 0 the normalised c-map is the arc-cosine map for every sigma_w
    for c in (0.1, 0.5, 0.9):
        cmap = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
        assert relu.kernel(0.7, c) / relu.second_moment(0.7) == pytest.approx(cmap)


@pytest.mark.parametrize("q", [0.01, 0.5, 1.0, 2.0, 10.0, 30.0, 600.0, 1000.0])
def test_gelu_quadrature_matches_closed_forms(q):
    """Up to q = 1000: there, rules too coarse to see gelu's bend near 0 agree on a value 3e-5 off."""
    gelu = T._resolve("gelu")
    r = math.sqrt(1 + 2 * q)
    v = q * (0.25 + (q / ((1 + q) * r) + 0.5 * math.atan(q / r)) / math.pi)
    d = (0.25 + math.asin(q / (1 + q)) / (2 * math.pi) + q / (math.pi * (1 + q) * r)
         + q / (2 * math.pi * r**3))
    assert gelu.second_moment(q) == pytest.approx(v, rel=1e-12)
    assert gelu.grad_moment(q) == pytest.approx(d, rel=1e-12)
    assert gelu.mean(q) == pytest.approx(q / math.sqrt(2 * math.pi * (1 + q)), rel=1e-12)


@pytest.mark.parametrize("q", [0.1, 1.0, 5.0, 30.0, 100.0])
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "silu"])
def test_quadrature_accuracy_against_adaptive(name, q):
    act = T._resolve(name)
    assert act.second_moment(q) == pytest.approx(gauss_ref(lambda x: act.phi(x) ** 2, q), rel=1e-10)
    assert act.grad_moment(q) == pytest.approx(gauss_ref(lambda x: act.dphi(x) ** 2, q), rel=1e-9)


def test_quadrature_over_an_array_of_lengths_is_elementwise():
    """Per-layer x per-example lengths (evaluated in cache-sized blocks): each entry equals the
    scalar evaluation and the closed form E[erf(sqrt(q) z)^2] = 2/pi asin(2q / (1 + 2q))."""
    erf = T._resolve(special.erf)
    q = np.geomspace(1e-3, 80.0, 7 * 53).reshape(7, 53)
    values = erf.second_moment(q)
    assert values.shape == q.shape
    np.testing.assert_allclose(values, 2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)), rtol=1e-11)
    assert [erf.second_moment(v) for v in q[3, :5]] == pytest.approx(values[3, :5], rel=1e-14)
    assert erf.second_moment(np.empty((0, 4))).shape == (0, 4)


STEEP_OR_KINKED = {"hardtanh": (lambda x: np.clip(x, -1.0, 1.0), lambda x: (np.abs(x) < 1.0) * 1.0),
                   "gelu(10x)": (lambda x: 10 * x * special.ndtr(10 * x),
                                 lambda x: 10 * special.ndtr(10 * x) + 100 * x * normal_pdf(10 * x))}


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "silu", "hardtanh", "gelu(10x)"])
def test_step_halving_quadrature_equals_the_finest_rule(name):
    """Each length stops halving the step early only where the 1601-node trapezoid rule agrees
    (to 1e-14 of E|f| for smooth phi; to 1e-10 for hardtanh's kinks), from q = 0 to the widest
    length the trapezoid rules take (sqrt(q) = 16.7: beyond it the finest rule misses phi's bends,
    test_wide_lengths_follow_phi_s_bends); coarse rules that miss gelu(10x)'s bend agree with each
    other 2.5e-5 away from it."""
    act = T._resolve(STEEP_OR_KINKED.get(name, name))
    z = np.linspace(-12.0, 12.0, 1601)
    weights = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi) * (24.0 / 1600)
    q = np.concatenate([[0.0], np.geomspace(1e-6, 1e4, 300)])
    q = q[np.sqrt(q) <= gaussian._WIDE]
    for f in (lambda x: act.phi(x) ** 2, lambda x: act.dphi(x) ** 2, act.phi):
        finest = f(np.sqrt(q)[:, None] * z) @ weights
        size = np.abs(f(np.sqrt(q)[:, None] * z)) @ weights
        tol = 1e-10 if name == "hardtanh" else 1e-14
        np.testing.assert_array_less(np.abs(gaussian._gauss(f, q) - finest), tol * size + 1e-300)


def gauss_ref_x(f, q, points=(-100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0)):
    """E f(sqrt(q) z) by adaptive quadrature over x = sqrt(q) z, split at ``points`` (phi's bends)
    and +-14 sqrt(q): independent of the rules in initlab.choices.gaussian."""
    s = math.sqrt(q)

    def g(x):
        return float(f(np.array(x))) * math.exp(-0.5 * (x / s) ** 2) / (s * math.sqrt(2 * math.pi))
    edges = sorted({-14 * s, 14 * s, *(p for p in points if abs(p) < 14 * s)})
    return sum(integrate.quad(g, lo, hi, epsabs=0, epsrel=1e-12, limit=500)[0] for lo, hi in zip(edges[:-1], edges[1:]))


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "silu", "hardtanh", "gelu(10x)"])
@pytest.mark.filterwarnings("ignore:The occurrence of roundoff error")  # quad on tanh^2 ~ 1, met to 1e-15
def test_wide_lengths_follow_phi_s_bends(name):
    """Lengths past the trapezoid rules' reach (sqrt(q) > 16.7, up to the top of the fixed-point
    search, 1e4, and beyond): E[phi^2], E[phi'^2], E[phi] to 1e-11 of E|f|. The finest trapezoid
    rule (step 1.5 in x at q = 1e4) had tanh's E[phi'^2] 20% off there, 3.4e-6 at q = 1e3."""
    act = T._resolve(STEEP_OR_KINKED.get(name, name))
    q = np.array([300.0, 1e3, 1e4, 1e6])
    for f in (lambda x: act.phi(x) ** 2, lambda x: act.dphi(x) ** 2, act.phi):
        got = gaussian._gauss(f, q)
        for value, length in zip(got, q):
            size = gauss_ref_x(lambda x: np.abs(f(x)), length)
            assert abs(value - gauss_ref_x(f, length)) <= 1e-11 * size, (name, length)


@pytest.mark.parametrize("q", [0.2, 3.0, 30.0])
def test_callable_activation_against_erf_closed_forms(q):
    """A plain callable (phi' by finite differences) and the two-input tensor quadrature."""
    erf = T._resolve(special.erf)
    assert erf.second_moment(q) == pytest.approx(2 / math.pi * math.asin(2 * q / (1 + 2 * q)),
                                                 rel=1e-12)
    assert erf.grad_moment(q) == pytest.approx(4 / math.pi / math.sqrt(1 + 4 * q), rel=1e-8)
    for c in (0.0, 0.3, 0.9, 1.0):
        exact = 2 / math.pi * math.asin(2 * q * c / (1 + 2 * q))
        assert erf.kernel(q, c) == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize("q", [1e-4, 0.5, 3.0, 50.0])
@pytest.mark.parametrize("name", ["elu", "selu"])
def test_elu_selu_closed_forms(name, q):
    act = T._resolve(name)
    assert act.second_moment(q) == pytest.approx(gauss_ref(lambda x: act.phi(x) ** 2, q), rel=1e-10)
    assert act.grad_moment(q) == pytest.approx(gauss_ref(lambda x: act.dphi(x) ** 2, q), rel=1e-10)
    assert act.mean(q) == pytest.approx(gauss_ref(act.phi, q), rel=1e-10, abs=1e-14)
    h = 1e-5 * q
    slope = (act.second_moment(q + h) - act.second_moment(q - h)) / (2 * h)
    assert act.length_slope(q) == pytest.approx(slope, rel=1e-6)


def test_activation_spec_forms_agree():
    @dataclass
    class Act:
        name: str
        negative_slope: float = 0.01

    as_str = T.length_map("leaky_relu", 2.0, 0.1, 1.0, 5)
    as_obj = T.length_map(Act("leaky_relu"), 2.0, 0.1, 1.0, 5)
    as_map = T.length_map({"name": "leaky_relu", "negative_slope": 0.01}, 2.0, 0.1, 1.0, 5)
    as_callable = T.length_map(lambda x: leaky(x, 0.01), 2.0, 0.1, 1.0, 5)
    np.testing.assert_allclose(as_obj, as_str, rtol=1e-14)
    np.testing.assert_allclose(as_map, as_str, rtol=1e-14)
    np.testing.assert_allclose(as_callable, as_str, rtol=1e-9)
    sharper = T.length_map({"name": "leaky_relu", "negative_slope": 0.3}, 2.0, 0.1, 1.0, 5)
    assert sharper[-1] > as_str[-1]
    approx = T.length_map({"name": "gelu", "approximate": "tanh"}, 2.0, 0.0, 1.0, 3)
    exact = T.length_map({"name": "gelu", "approximate": "none"}, 2.0, 0.0, 1.0, 3)
    assert approx[-1] != exact[-1] and approx[-1] == pytest.approx(exact[-1], rel=1e-3)
    with pytest.raises(ValueError):
        T.length_map("softsign", 1.0, 0.0, 1.0, 2)


# ----------------------------------------------------------------- effective sigma_w^2
class FanMode(str, Enum):  # the project's configs store the fan mode as a str Enum
    fan_in = "fan_in"
    fan_out = "fan_out"


@dataclass
class HeCfg:
    name: str
    factor: float = 2.0
    mode: FanMode = FanMode.fan_in


def _torch_fill(cfg, fan_in, fan_out):
    """What the project's inits do for each config (torch.nn.init underneath)."""
    w = torch.empty(fan_out, fan_in, dtype=torch.float64)
    name = cfg["name"] if isinstance(cfg, dict) else cfg.name
    if name in ("he_normal", "he_uniform"):
        fan = fan_in if cfg.mode == "fan_in" else fan_out
        std = math.sqrt(cfg.factor / fan)
        if name == "he_normal":
            return torch.nn.init.normal_(w, 0.0, std)
        return torch.nn.init.uniform_(w, -math.sqrt(3) * std, math.sqrt(3) * std)
    lecun_std = 1 / math.sqrt(fan_in)
    fill = {
        "xavier_normal": lambda: torch.nn.init.xavier_normal_(w, gain=cfg.get("gain", 1.0)),
        "xavier_uniform": lambda: torch.nn.init.xavier_uniform_(w, gain=cfg.get("gain", 1.0)),
        "lecun_normal": lambda: torch.nn.init.normal_(w, 0.0, lecun_std),
        "lecun_uniform": lambda: torch.nn.init.uniform_(w, -3**0.5 * lecun_std, 3**0.5 * lecun_std),
        "normal": lambda: torch.nn.init.normal_(w, 0.0, cfg["std"]),
        "small_normal": lambda: torch.nn.init.normal_(w, 0.0, cfg["std"]),
        "torch_default": lambda: torch.nn.Linear(fan_in, fan_out, dtype=torch.float64).weight.detach(),
        "zero": lambda: torch.nn.init.zeros_(w),
        "orthogonal": lambda: torch.nn.init.orthogonal_(w, gain=cfg.get("gain", 1.0)),
        "trunc_normal": lambda: torch.nn.init.trunc_normal_(
            w, cfg["mean"], cfg["std"], cfg["a"], cfg["b"]),
    }
    return fill[name]()


INIT_CASES = [
    (HeCfg("he_normal"), 1024, 512),
    (HeCfg("he_normal", 1.0, FanMode.fan_out), 1024, 512),
    (HeCfg("he_uniform"), 512, 1024),
    (HeCfg("he_uniform", 0.5, FanMode.fan_out), 512, 1024),
    ({"name": "xavier_normal", "gain": 1.0}, 784, 128),
    ({"name": "xavier_uniform", "gain": 2.0}, 512, 1024),
    ({"name": "lecun_normal"}, 784, 512),
    ({"name": "lecun_uniform"}, 784, 512),
    ({"name": "normal", "std": 0.1}, 784, 512),
    ({"name": "small_normal", "std": 0.01}, 784, 512),
    ({"name": "torch_default"}, 784, 512),  # what nn.Linear draws when built
    ({"name": "zero"}, 128, 128),
    ({"name": "orthogonal", "gain": 1.0}, 784, 128),
    ({"name": "orthogonal", "gain": 1.5}, 128, 1024),
    ({"name": "trunc_normal", "mean": 0.0, "std": 0.1, "a": -2.0, "b": 2.0}, 784, 512),
    ({"name": "trunc_normal", "mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0}, 784, 512),
    ({"name": "trunc_normal", "mean": 0.3, "std": 1.0, "a": -1.0, "b": 2.5}, 784, 512),
]


@pytest.mark.parametrize("cfg, fan_in, fan_out", INIT_CASES)
def test_effective_sigma_w2_matches_torch_init(cfg, fan_in, fan_out):
    torch.manual_seed(0)
    empirical = fan_in * _torch_fill(cfg, fan_in, fan_out).pow(2).mean().item()
    predicted = T.effective_sigma_w2(cfg, fan_in, fan_out)
    assert predicted == pytest.approx(empirical, rel=0.015, abs=1e-12)


def test_effective_sigma_w2_reference_numbers():
    xavier = {"name": "xavier_uniform"}
    assert T.effective_sigma_w2(xavier, 784, 128) == pytest.approx(1.7193, abs=1e-4)
    assert T.effective_sigma_w2(xavier, 128, 128) == 1.0
    assert T.effective_sigma_w2(xavier, 128, 10) == pytest.approx(1.8551, abs=1e-4)
    assert T.effective_sigma_w2({"name": "normal", "std": 0.01}, 784, 128) == pytest.approx(0.0784)
    # tau(alpha) for a symmetric cut at +-alpha std; torch's bounds are absolute (alpha = 2/std)
    taus = {1: 0.29113, 1.5: 0.55152, 2: 0.77374, 2.5: 0.91126, 3: 0.97334, 4: 0.99893}
    for alpha, tau in taus.items():
        cfg = {"name": "trunc_normal", "mean": 0.0, "std": 1.0, "a": -alpha, "b": alpha}
        assert T.effective_sigma_w2(cfg, 1, 1) == pytest.approx(tau, abs=6e-6)
    default = {"name": "trunc_normal"}  # std 0.1, a=-2, b=2: a cut at +-20 std, no correction
    assert T.effective_sigma_w2(default, 100, 10) == pytest.approx(1.0, rel=1e-12)
    assert T.effective_sigma_b2("zeros", 0.3) == 0.0
    assert T.effective_sigma_b2("normal", 0.3) == pytest.approx(0.09)
    with pytest.raises(ValueError):
        T.effective_sigma_w2({"name": "kaiming"}, 10, 10)


# ----------------------------------------------------------------- Monte Carlo of wide networks
WIDTH, N_IN, DEPTH = 1000, 784, 10
MC_CASES = [("tanh", 2.0, 0.0), ("tanh", 1.5, 0.05), ("sigmoid", 1.0, 0.0), ("sigmoid", 4.0, 0.1),
            ("gelu", 1.0, 0.02), ("gelu", 1.2, 0.05)]
TORCH_ACT = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": torch.nn.functional.gelu}


@contextmanager
def one_torch_thread():
    """Tiny matmuls run far faster single-threaded, above all on a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def probe_inputs(generator, batch):
    """Gaussian inputs rescaled to per-example q0 from 0.5 to 1.5 (exercises the averaging)."""
    q0 = torch.linspace(0.5, 1.5, batch, dtype=torch.float64)
    x = torch.randn(batch, N_IN, generator=generator, dtype=torch.float64)
    return x * (q0 * N_IN / x.pow(2).sum(dim=1)).sqrt()[:, None], q0.numpy()


@pytest.fixture(scope="module")
def mc_lengths():
    """Mean over 48 Gaussian networks of width 1000 of h.pow(2).mean() per layer, every case
    pushed through the same weights. Many nets rather than one: in ordered phases (sigmoid) all
    inputs share one representation, so one net's q-hat carries a sqrt(2/N) ~ 4.5% error."""
    n_nets, batch = 48, 8
    generator = torch.Generator().manual_seed(2024)
    x0, q0 = probe_inputs(generator, batch)
    x0 = x0.float()
    sigma_w = torch.tensor([c[1] for c in MC_CASES]).sqrt()[:, None, None]
    sigma_b = torch.tensor([c[2] for c in MC_CASES]).sqrt()[:, None, None]
    q_hat = torch.zeros(len(MC_CASES), DEPTH, dtype=torch.float64)
    with one_torch_thread():
        for _ in range(n_nets):
            x = x0.expand(len(MC_CASES), batch, N_IN)
            for layer in range(DEPTH):
                fan_in = x.shape[-1]
                w = torch.randn(fan_in, WIDTH, generator=generator)
                b = torch.randn(WIDTH, generator=generator)
                h = x @ w * (sigma_w / math.sqrt(fan_in)) + b * sigma_b
                q_hat[:, layer] += h.pow(2).mean(dim=(1, 2)) / n_nets
                x = torch.stack([TORCH_ACT[case[0]](hc) for case, hc in zip(MC_CASES, h)])
    return dict(zip(MC_CASES, q_hat.numpy())), q0


@pytest.mark.parametrize("case", MC_CASES)
def test_length_map_matches_monte_carlo(mc_lengths, case):
    measured, q0 = mc_lengths
    np.testing.assert_allclose(measured[case], T.length_map(*case, q0, DEPTH), rtol=0.03)


@pytest.mark.parametrize("case", MC_CASES)
def test_predict_mlp_lengths_match_monte_carlo(mc_lengths, case):
    """The whole-network table against the same Monte-Carlo networks (not against length_map,
    whose propagation it shares): He-style init with factor sigma_w^2 gives every layer that
    sigma_w^2, fan_in 784 or 1000. Tolerance as above (3%, the 48-net average's spread)."""
    name, sigma_w2, sigma_b2 = case
    measured, q0 = mc_lengths
    dims = [(N_IN, WIDTH)] + [(WIDTH, WIDTH)] * (DEPTH - 1) + [(WIDTH, 10)]
    init = {"name": "he_normal", "factor": sigma_w2, "mode": "fan_in"}
    bias = ("normal", math.sqrt(sigma_b2)) if sigma_b2 else ("zeros", 0.0)
    table = T.predict_mlp(dims, init, name, q0, *bias)
    np.testing.assert_allclose(table["sigma_w2"], sigma_w2, rtol=1e-12)
    np.testing.assert_allclose(measured[case], table["q_pred"][:DEPTH], rtol=0.03)


def test_backward_and_jacobian_match_monte_carlo():
    """One chaotic tanh net (width 1500): true backprop of random output errors, and a
    Hutchinson estimate of mean s^2 of dh^K/dh^1, against the local-gain products."""
    name, sigma_w2, width, batch = "tanh", 2.0, 1500, 32
    generator = torch.Generator().manual_seed(7)
    x, q0 = probe_inputs(generator, batch)
    with one_torch_thread():
        weights, hs = [], []
        for _ in range(DEPTH):
            weights.append(torch.randn(x.shape[-1], width, generator=generator, dtype=torch.float64)
                           * math.sqrt(sigma_w2 / x.shape[-1]))
            hs.append(x @ weights[-1])
            x = torch.tanh(hs[-1])
        deltas = [torch.randn(batch, width, generator=generator, dtype=torch.float64)]
        for h, w in zip(hs[-2::-1], weights[:0:-1]):
            deltas.append((1 - torch.tanh(h) ** 2) * (deltas[-1] @ w.T))
        tangent = torch.randn(batch, width, generator=generator, dtype=torch.float64)
        for h, w in zip(hs[:-1], weights[1:]):
            tangent = ((1 - torch.tanh(h) ** 2) * tangent) @ w
    measured = np.array([d.pow(2).mean().item() for d in deltas[::-1]])
    # local gains at each example's measured lengths (the forward map is tested above)
    q = np.array([h.pow(2).mean(dim=1).numpy() for h in hs[:-1]])
    predicted = T.delta_sq_ratio(name, [sigma_w2] * (DEPTH - 1), q).mean(axis=1)
    np.testing.assert_allclose(measured / measured[-1], predicted, rtol=0.05)
    assert tangent.pow(2).mean().item() == pytest.approx(
        T.jacobian_mean_sq_sv_pred(name, [sigma_w2] * (DEPTH - 1), q), rel=0.05)
    # the whole-network table, from the inputs alone (its own lengths), at the same tolerance
    dims = [(N_IN, width)] + [(width, width)] * (DEPTH - 1) + [(width, 10)]
    table = T.predict_mlp(dims, {"name": "he_normal", "factor": sigma_w2, "mode": "fan_in"}, name, q0)
    assert tangent.pow(2).mean().item() == pytest.approx(table["jac_msv_pred"][DEPTH - 1], rel=0.05)


# ----------------------------------------------------------------- fixed points, phases, depth
def test_tanh_without_bias_is_critical_at_one():
    assert T.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-12)
    assert T.fixed_point("tanh", 1.0, 0.0) == 0.0
    assert T.chi1("tanh", 1.0, 0.0) == 1.0  # at q* = 0, E[phi'(0 z)^2] is phi'(0)^2 = 1 exactly, not by a rule
    assert T.depth_scales("tanh", 1.0, 0.0) == (math.inf, math.inf)
    assert T.depth_scales("tanh", 1.01, 0.0)[1] > 1e4
    assert T.chi1("tanh", 0.9, 0.0) == pytest.approx(0.9)  # q* = 0: chi_1 = sigma_w^2 phi'(0)^2


def test_schoenholz_critical_point_and_six_xi_c():
    sigma_w2_c = T.critical_sigma_w2("tanh", SIGMA_B2_SCHOENHOLZ)
    assert sigma_w2_c == pytest.approx(1.760955, abs=2e-6)
    assert T.chi1("tanh", sigma_w2_c, SIGMA_B2_SCHOENHOLZ) == pytest.approx(1.0, abs=1e-9)
    assert T.depth_scales("tanh", sigma_w2_c * (1 + 1e-6), SIGMA_B2_SCHOENHOLZ)[1] > 1e5
    assert T.depth_scales("tanh", sigma_w2_c * (1 - 1e-6), SIGMA_B2_SCHOENHOLZ)[1] > 1e5
    # quoted to 3 figures (94.8 is 94.746 by adaptive quadrature as well)
    table = {1.0: 21.8, 1.25: 40.8, 1.5: 94.8, 2.0: 151, 2.5: 70.8, 3.0: 54.3, 4.0: 41.9}
    for sigma_w2, six_xi_c in table.items():
        xi_c = T.depth_scales("tanh", sigma_w2, SIGMA_B2_SCHOENHOLZ)[1]
        assert 6 * xi_c == pytest.approx(six_xi_c, rel=3e-3)
    assert 6 * T.depth_scales("tanh", 1.76, SIGMA_B2_SCHOENHOLZ)[1] > 1e3
    # chaotic phase: correlation decay rate 1/xi_c = 0.0848 at sigma_w^2 = 2.5 (c* = 0.44680)
    xi_c = T.depth_scales("tanh", 2.5, SIGMA_B2_SCHOENHOLZ)[1]
    assert 1 / xi_c == pytest.approx(0.0848, abs=1e-4)


def test_xi_q_matches_observed_length_contraction():
    for sigma_w2, rate in [(1.5, 0.55198), (2.5, 0.42846)]:
        xi_q = T.depth_scales("tanh", sigma_w2, SIGMA_B2_SCHOENHOLZ)[0]
        assert math.exp(-1 / xi_q) == pytest.approx(rate, abs=1e-5)


def test_fixed_point_reference_numbers():
    for name, sigma_w2, q_star, chi_1 in [("sigmoid", 1.0, 0.2646869, 0.05572071),
                                          ("sigmoid", 2.0, 0.5552896, 0.1009771),
                                          ("tanh", 2.0, 0.6179648, 1.105529)]:
        assert T.fixed_point(name, sigma_w2, 0.0) == pytest.approx(q_star, abs=1e-7)
        assert T.chi1(name, sigma_w2, 0.0) == pytest.approx(chi_1, rel=1e-6)
    # tanh (2, 0) is chaotic with c* = 0: chi_c* = sigma_w^2 (E phi')^2 = 0.9550, xi_c = 21.72
    assert T.depth_scales("tanh", 2.0, 0.0)[1] == pytest.approx(21.72, abs=0.005)
    # sigmoid without bias: critical only at sigma_w^2 = 103.0 with q* = 45.6
    sigma_w2_c = T.critical_sigma_w2("sigmoid", 0.0)
    assert sigma_w2_c == pytest.approx(103.0, abs=0.05)
    assert T.fixed_point("sigmoid", sigma_w2_c, 0.0) == pytest.approx(45.6, abs=0.05)
    # a point on the tanh critical line parameterised by q* = 0.5
    assert T.critical_sigma_w2("tanh", 0.0380) == pytest.approx(1.687975, rel=2e-4)


@pytest.mark.parametrize("sigma_w2, sigma_b2", [(1.0, 0.0), (3.0, 0.2), (8.0, 0.5)])
def test_sigmoid_is_a_shifted_tanh(sigma_w2, sigma_b2):
    tanh_w2, tanh_b2 = sigma_w2 / 16, sigma_w2 / 16 + sigma_b2 / 4
    assert T.fixed_point("sigmoid", sigma_w2, sigma_b2) == pytest.approx(
        4 * T.fixed_point("tanh", tanh_w2, tanh_b2), rel=1e-10)
    assert T.chi1("sigmoid", sigma_w2, sigma_b2) == pytest.approx(
        T.chi1("tanh", tanh_w2, tanh_b2), rel=1e-10)


def test_piecewise_linear_fixed_points():
    assert math.isnan(T.fixed_point("relu", 2.0, 0.0))  # marginal: every length is fixed
    assert T.fixed_point("relu", 1.0, 0.1) == pytest.approx(0.2)
    assert T.fixed_point("relu", 1.0, 0.0) == 0.0
    assert T.fixed_point("relu", 3.0, 0.0) == math.inf
    assert T.fixed_point("linear", 0.5, 0.1) == pytest.approx(0.2)
    assert T.chi1("relu", 3.0, 0.0) == 1.5
    assert T.critical_sigma_w2("relu", 0.3) == 2.0
    assert T.critical_sigma_w2({"name": "leaky_relu", "negative_slope": 0.5}) == pytest.approx(1.6)
    # relu without bias: arc-cosine c-map with slope 1 at c = 1, so xi_c = inf; q contracts by 1/2
    assert T.depth_scales("relu", 1.0, 0.0) == (pytest.approx(1 / math.log(2)), math.inf)
    assert T.depth_scales("relu", 1.0, 0.1) == (pytest.approx(1 / math.log(2)),) * 2


def test_gelu_without_bias_has_no_stable_nonzero_length():
    for sigma_w2 in (1.0, 2.0, 3.5):
        assert T.fixed_point("gelu", sigma_w2, 0.0) == 0.0
        assert T.chi1("gelu", sigma_w2, 0.0) == pytest.approx(sigma_w2 / 4)
    assert T.fixed_point("gelu", 4.5, 0.0) == math.inf
    # 2 < sigma_w^2 < 4: unstable q_u (0.6781 at 2.5) separates decay from growth
    q0 = 0.6781 / 2.5 * np.array([1.02, 0.98])  # q^1 = 2.5 q0 just above / below q_u
    above, below = (T.length_map("gelu", 2.5, 0.0, q, 4) for q in q0)
    assert np.all(np.diff(above) > 0) and np.all(np.diff(below) < 0)
    np.testing.assert_allclose(T.length_map("gelu", 2.5, 0.0, q0, 4), (above + below) / 2)


# ----------------------------------------------------------------- length maps and backward
LENGTH_TABLE = {  # convention A, q0 = 1, sigma_b = 0: layers 1, 2, 5, 10, 20
    ("relu", 1): [1, 0.5, 0.0625, 0.001953, 1.907e-06],
    ("tanh", 1): [1, 0.3943, 0.1279, 0.05801, 0.02729],
    ("tanh", 2): [2, 1.04, 0.6657, 0.6203, 0.618],
    ("sigmoid", 1): [1, 0.2934, 0.2647, 0.2647, 0.2647],
    ("sigmoid", 2): [2, 0.6368, 0.5553, 0.5553, 0.5553],
    ("gelu", 1): [1, 0.4252, 0.01313, 1.325e-05, 1.264e-11],
    ("gelu", 2): [2, 1.844, 1.375, 0.6265, 0.005388],
}


@pytest.mark.parametrize("name, sigma_w2", LENGTH_TABLE)
def test_length_map_reference_table(name, sigma_w2):
    q = T.length_map(name, sigma_w2, 0.0, 1.0, 20)
    np.testing.assert_allclose(q[[0, 1, 4, 9, 19]], LENGTH_TABLE[name, sigma_w2], rtol=1e-3)


BACKWARD_TABLE = {  # E||delta^l||^2 / E||delta^20||^2 at l = 1, 5, 10, 19
    ("tanh", 1): [0.03786, 0.2254, 0.479, 0.9475],
    ("tanh", 2): [2.894, 4.258, 2.719, 1.106],
    ("sigmoid", 1): [1.189e-24, 1.55e-19, 2.885e-13, 0.05572],
    ("sigmoid", 2): [8.593e-20, 1.157e-15, 1.102e-10, 0.101],
    ("gelu", 1): [1.586e-11, 9.726e-10, 9.537e-07, 0.25],
    ("gelu", 2): [0.007614, 0.008643, 0.01345, 0.5132],
}


@pytest.mark.parametrize("name, sigma_w2", BACKWARD_TABLE)
def test_backward_ratio_reference_table(name, sigma_w2):
    q = T.length_map(name, sigma_w2, 0.0, 1.0, 20)
    ratio = T.delta_sq_ratio(name, [sigma_w2] * 19, q[:-1])
    assert ratio[-1] == 1.0
    np.testing.assert_allclose(ratio[[0, 4, 9, 18]], BACKWARD_TABLE[name, sigma_w2], rtol=2e-3)


def _mlp_dims(n_linear):
    return [(784, 128)] + [(128, 128)] * (n_linear - 2) + [(128, 10)]


@pytest.mark.parametrize("n_linear, q_last_hidden, q_logits, grad_ratio", [
    (22, 1.64e-6, 1.52e-6, 8.85e-7), (30, 6.41e-9, 5.94e-9, 3.46e-9)])
def test_predict_mlp_he_vs_xavier_relu(n_linear, q_last_hidden, q_logits, grad_ratio):
    """docs/theory.md §9.5: per-example error norms ||delta^1||^2/||delta^L||^2 for 784-128x(L-1)-10."""
    he = T.predict_mlp(_mlp_dims(n_linear), HeCfg("he_normal"), "relu", 1.0)
    np.testing.assert_allclose(he["q_pred"], 2.0)
    xavier = T.predict_mlp(_mlp_dims(n_linear), {"name": "xavier_normal"}, "relu", 1.0,
                           delta_out_rms=0.3)
    assert xavier["q_pred"][0] == pytest.approx(1.7193, abs=1e-4)
    assert xavier["q_pred"][-2] == pytest.approx(q_last_hidden, rel=3e-3)
    assert xavier["q_pred"][-1] == pytest.approx(q_logits, rel=3e-3)
    norm_sq = xavier["delta_rms_pred"] ** 2 * xavier["fan_out"]
    assert norm_sq[-1] == pytest.approx(0.3**2 * 10)
    assert norm_sq[0] / norm_sq[-1] == pytest.approx(grad_ratio, rel=3e-3)
    assert xavier["jac_msv_pred"][-2] == pytest.approx(0.5 ** (n_linear - 2))


def test_predict_mlp_averages_per_example_predictions():
    q0 = np.array([0.3, 1.0, 2.5])
    dims, init = _mlp_dims(6), {"name": "orthogonal", "gain": 1.2}
    table = T.predict_mlp(dims, init, "tanh", q0, bias_init="normal", bias_std=0.2)
    singles = [T.predict_mlp(dims, init, "tanh", q, bias_init="normal", bias_std=0.2) for q in q0]
    for key in ("q_pred", "post_mean_pred", "chi_local", "jac_msv_pred"):
        np.testing.assert_allclose(table[key], np.mean([s[key] for s in singles], axis=0),
                                   rtol=1e-12, atol=1e-15)  # tanh's post_mean_pred is 0
    mean_sq = np.mean([s["delta_rms_pred"] ** 2 for s in singles], axis=0)
    np.testing.assert_allclose(table["delta_rms_pred"] ** 2, mean_sq, rtol=1e-12)
    np.testing.assert_allclose(table["q_pred"], T.length_map("tanh", 1.44, 0.04, q0, 6))
    assert table["layer"].tolist() == list(range(1, 7)) and np.isnan(table["chi_local"][-1])


def test_predict_mlp_post_activation_moments():
    """docs/theory.md §2.4: pooled post-activation means at layer 5 (relu He 0.5642, gelu 0.3559)."""
    relu = T.predict_mlp(_mlp_dims(8), HeCfg("he_normal"), "relu", 1.0)
    gelu = T.predict_mlp(_mlp_dims(8), HeCfg("he_normal"), "gelu", 1.0)
    assert relu["post_mean_pred"][4] == pytest.approx(0.5642, abs=1e-4)
    assert gelu["post_mean_pred"][4] == pytest.approx(0.3559, abs=1e-4)
    assert relu["post_var_pred"][4] == pytest.approx(1.0 - 1.0 / math.pi)
    sigmoid = T.predict_mlp(_mlp_dims(5), HeCfg("he_normal"), "sigmoid", 1.0)
    np.testing.assert_allclose(sigmoid["post_mean_pred"][:-1], 0.5, rtol=1e-12)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu"])
def test_predict_mlp_agrees_with_the_per_layer_maps_example_by_example(name):
    """predict_mlp reuses the forward pass's second moments for post_var_pred and one set of
    backward gains for delta_rms_pred and the Jacobian: each must equal the public maps applied
    example by example (length_map of one example, V and E[phi'^2] at its lengths)."""
    q0, n_linear, sigma_w2, bias_std = np.array([0.4, 1.0, 2.2]), 6, 1.7, 0.3
    init = {"name": "he_normal", "factor": sigma_w2, "mode": "fan_in"}
    table = T.predict_mlp(_mlp_dims(n_linear), init, name, q0, "normal", bias_std, delta_out_rms=0.25)
    act = T._resolve(name)
    q = np.stack([T.length_map(name, sigma_w2, bias_std**2, [v], n_linear) for v in q0], axis=1)
    hidden = q[:-1]
    mean = act.mean(hidden).mean(axis=1)
    np.testing.assert_allclose(table["post_var_pred"][:-1], act.second_moment(hidden).mean(axis=1) - mean**2,
                               rtol=1e-12)
    ratio = T.delta_sq_ratio(name, [sigma_w2] * (n_linear - 1), hidden)  # fan_in 128 after the first layer
    fan_out = np.array([d[1] for d in _mlp_dims(n_linear)])
    np.testing.assert_allclose(table["delta_rms_pred"], np.sqrt((ratio * 10 * 0.25**2).mean(axis=1) / fan_out),
                               rtol=1e-12)
    assert table["jac_msv_pred"][-2] == pytest.approx(
        T.jacobian_mean_sq_sv_pred(name, [sigma_w2] * (n_linear - 2), hidden[:-1]), rel=1e-12)


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "gelu"])
def test_zero_init_predicts_exact_zeros(name):
    table = T.predict_mlp(_mlp_dims(5), {"name": "zero"}, name, [0.5, 1.0], delta_out_rms=0.3)
    assert np.all(table["q_pred"] == 0.0)
    assert np.all(table["delta_rms_pred"][:-1] == 0.0)
    assert table["delta_rms_pred"][-1] == pytest.approx(0.3)
    assert np.all(table["jac_msv_pred"][1:] == 0.0)
