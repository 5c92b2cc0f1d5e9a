"""Kernel shaping (TAT, DKS) and the SUO / delta-orthogonal inits against what the papers promise.

The promised C-map properties are checked with the project's own Gaussian expectations
(initlab.choices.gaussian: closed forms for leaky ReLU, quadrature for smooth phi), not dks's
integrals; the built networks against Monte-Carlo passes through wide random nets.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import integrate
from torch import nn

from conftest import ROOT, compose_config, read_csv, run_job
from initlab import kernel_shaping, theory
from initlab.choices import INITS
from initlab.choices.gaussian import PiecewiseLinear, _gauss
from initlab.config import LEAKY_RELU_SLOPE, ConfigError, to_experiment
from initlab.inits import initialize
from initlab.models import Inputs, build
from initlab.models.cnn import CNN
from initlab.models.sites import probing


@pytest.fixture(autouse=True)
def one_thread():
    """QR of the orthogonal samplers and the wide passes: one thread (the machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def experiment(*overrides: str):
    return to_experiment(compose_config("model.bias_init=zeros", *overrides))


def network_c(act, c0: float, depth: int) -> float:
    """C map of ``depth`` shaped layers with sigma_w^2 = 1 at q = 1: c <- E[phi(u_a) phi(u_b)] / Q(1)."""
    c = c0
    for _ in range(depth):
        c = act.kernel(1.0, c) / float(act.second_moment(1.0))
    return c


@pytest.mark.parametrize("depth,eta", [(20, 0.9), (50, 0.9), (10, 0.5)])
def test_tat_leaky_relu_network_c0_is_eta(depth, eta):
    """TAT (Zhang et al. 2022, leaky ReLU): Q(1) = 1 and the network's C_f(0) = eta."""
    exp = experiment("activation=leaky_relu", "activation.transform=tat", f"activation.c_val_0_target={eta}",
                     f"depth={depth}")
    params = kernel_shaping.solve(exp.activation, depth)
    act = kernel_shaping.expectations(exp.activation, params)
    assert float(act.second_moment(1.0)) == pytest.approx(1.0, abs=1e-12)
    assert network_c(act, 0.0, depth) == pytest.approx(eta, abs=1e-6)
    assert 0 < params["negative_slope"] < 1


@pytest.mark.parametrize("name,depth,zeta", [("tanh", 20, 1.5), ("tanh", 100, 1.5), ("silu", 20, 3.0),
                                             ("leaky_relu", 20, 1.5), ("elu", 20, 1.5)])
def test_dks_network_c_slope_at_1_is_zeta(name, depth, zeta):
    """DKS (Martens et al. 2021): local Q(1) = 1, Q'(1) = 1, C(0) = 0 and the network's C_f'(1) = zeta;
    C'(1) of one layer is E[phi'(z)^2] / Q(1) at q = 1."""
    overrides = [f"activation={name}", "activation.transform=dks", f"depth={depth}"]
    exp = experiment(*overrides, *([f"activation.c_slope_1_target={zeta}"] if zeta != 1.5 else []))
    act = kernel_shaping.expectations(exp.activation, kernel_shaping.solve(exp.activation, depth))
    assert float(act.second_moment(1.0)) == pytest.approx(1.0, abs=1e-6)
    eps = 1e-3  # Q'(1) = dV/dq by differences of V (smooth in q even where phi has a kink)
    assert float(act.second_moment(1 + eps) - act.second_moment(1 - eps)) / (2 * eps) == pytest.approx(1.0, abs=1e-4)
    assert act.kernel(1.0, 0.0) == pytest.approx(0.0, abs=1e-6)
    # the leaky ReLU's and elu's kinks (elu's moved to x = 1.2 by DKS's input scale and shift) split
    # out of the quadrature: as exact as the smooth ones (a trapezoid grid across them was 3e-3 off)
    assert float(act.grad_moment(1.0)) == pytest.approx(zeta ** (1 / depth), rel=5e-6)
    assert float(act.length_slope(1.0)) == pytest.approx(1.0, abs=1e-6)  # Q'(1) again, with phi phi''s delta
    c1 = 1 - 1e-7  # C'(1) = E[phi'(u_a) phi'(u_b)] / Q(1) at c -> 1: the two-input kernel agrees
    assert act.grad_kernel(1.0, c1) == pytest.approx(float(act.grad_moment(1.0)), rel=1e-5)


@pytest.mark.slow
def test_tat_tanh_network_curvature_is_tau():
    """TAT, smooth phi: C'(1) = 1 per layer, so C_f''(1) = depth * E[phi''(z)^2] / Q(1) = tau."""
    depth, tau = 20, 0.3
    exp = experiment("activation=tanh", "activation.transform=tat", f"depth={depth}")
    act = kernel_shaping.expectations(exp.activation, kernel_shaping.solve(exp.activation, depth))
    h = 1e-4
    curvature = _gauss(lambda x: ((act.dphi(x + h) - act.dphi(x - h)) / (2 * h)) ** 2, 1.0)
    assert float(act.grad_moment(1.0)) == pytest.approx(1.0, abs=1e-5)
    assert depth * float(curvature) == pytest.approx(tau, rel=1e-3)


@pytest.mark.parametrize("overrides", [("activation=leaky_relu", "activation.transform=tat"),
                                       ("activation=tanh", "activation.transform=dks")])
def test_torch_module_is_dks_transformed_activation(overrides):
    """The module put into the model computes what dks's public PyTorch API returns."""
    from dks.pytorch.activation_transform import get_transformed_activations

    depth = 20
    exp = experiment(*overrides, f"depth={depth}")
    model = build(exp, Inputs("vectors", (30,), 3))
    sites = kernel_shaping.shaped_sites(model)
    assert len(sites) == depth
    method = exp.activation.transform.value.upper()
    ours = exp.activation.name
    theirs = get_transformed_activations([ours], method=method,
                                         subnet_max_func=kernel_shaping.plain_chain(depth))[ours]
    x = torch.linspace(-5, 5, 201, dtype=torch.float64)
    torch.testing.assert_close(sites[0].activation(x), theirs(x), rtol=1e-6, atol=1e-9)


def test_the_transform_follows_the_built_depth():
    """Deeper nets get a more nearly linear phi_hat: the transform is solved per depth."""
    shallow = kernel_shaping.solve(experiment("activation=leaky_relu", "activation.transform=tat",
                                              "depth=20").activation, 20)
    deep = kernel_shaping.solve(experiment("activation=leaky_relu", "activation.transform=tat",
                                           "depth=100").activation, 100)
    assert shallow["negative_slope"] < deep["negative_slope"] < 1


@pytest.mark.parametrize("overrides,chi1", [(("activation=leaky_relu", "activation.transform=tat", "depth=14"), 1.0),
                                             (("activation=tanh", "activation.transform=tat", "depth=3"), 1.0),
                                             (("activation=tanh", "activation.transform=dks", "depth=3"), 1.5 ** (1 / 3))])
def test_result_json_holds_the_solved_parameters_and_their_phase(tmp_path, overrides, chi1):
    """result.json's activation_transform: the parameters solved for the job's own depth (those the
    built modules carry) and whether PLN normalizes its inputs (digits: 64 features, so yes). Its
    theory is at the q = 1 the transform keeps: chi_1 = C_f'(1) per layer, 1 for TAT and zeta^(1/D)
    for DKS (the search from small lengths finds another fixed point: q* = 0.557, chi_1 = 1.079 for
    DKS tanh at depth 3), and Q'(1) = 1 makes the length depth scale infinite."""
    cfg = compose_config("dataset=digits", "epochs=1", "model.width=16", "probe_size=64", "threads=1",
                         "init=scaled_orthogonal", *overrides)
    result = run_job(cfg, tmp_path)
    exp = to_experiment(cfg)
    solved = kernel_shaping.solve(exp.activation, exp.depth)
    assert result["activation_transform"] == {**solved, "pln_inputs": True}
    phase = result["theory"]
    assert (phase["sigma_w2"], phase["sigma_b2"], phase["q_star"]) == (1.0, 0.0, 1.0)
    assert phase["chi1"] == pytest.approx(chi1, rel=1e-7)
    assert phase["xi_q"] == math.inf  # Q'(1) = 1: marginal (was 2**53 for TAT leaky ReLU, from 1 - 1.1e-16)
    assert run_job(compose_config("dataset=digits", "epochs=1", "model.width=16", "probe_size=64", "threads=1"),
                   tmp_path / "plain")["activation_transform"] is None


@pytest.mark.parametrize("init, bias, why", [
    (["init=scaled_orthogonal"], [], None),
    (["init=he_normal"], [], "this run has sigma_w^2 = 2"),
    (["init=scaled_orthogonal"], ["model.bias_init=normal", "model.bias_std=0.1"],
     "model.bias_init=normal draws nonzero biases (sigma_b^2 > 0)"),
    # outside the theory (no predictions), so no warning came from it: the user test's three
    (["init=scaled_orthogonal", "init.apply_to=head"], [],
     "init.apply_to=head leaves the hidden layers at torch's default draw (sigma_w^2 = 1/3)"),
    (["init=scaled_orthogonal"], ["model.bias_init=torch_default"],
     "model.bias_init=torch_default draws nonzero biases (sigma_b^2 > 0)"),
    (["init=lsuv"], [], "init=lsuv sets each layer's scale from the data batch (LSUV), so the mean-field "
                        "sigma_w^2 is not known before the run"),
])
def test_a_shaped_net_whose_weights_or_biases_break_the_shaping_is_warned_about(tmp_path, caplog, init, bias, why):
    """TAT under he_normal (sigma_w^2 = 2) ran silently while q doubled every layer (3.5e5 at layer
    20): the shaping assumes weights that keep q and zero biases. The warning came with the theory's
    predictions, so runs the theory does not cover (apply_to=head, torch_default biases, LSUV) were
    not warned: it is now read from the config."""
    cfg = compose_config("dataset=digits", "epochs=0", "model.width=16", "probe_size=64", "threads=1", "depth=14",
                         "activation=leaky_relu", "activation.transform=tat", *init, *bias)
    with caplog.at_level("WARNING", logger="initlab.train.predictions"):
        run_job(cfg, tmp_path)
    lines = [r.getMessage() for r in caplog.records if "its kernel is not the shaped one" in r.getMessage()]
    assert len(lines) == int(why is not None)
    if why is not None:
        assert f"and zero biases; {why}" in lines[0]


def _passes(model, x):
    with probing(model, shifts=False) as probe:
        model(x)
    return [t.pre.double() for t in probe.taps.values()]


@pytest.mark.parametrize("overrides", [("activation=leaky_relu", "activation.transform=tat"),
                                       ("activation=tanh", "activation.transform=dks")])
def test_q_and_c_maps_of_the_shaped_net_match_monte_carlo(overrides):
    """A wide shaped MLP (SUO weights, zero biases, PLN inputs) against the mean-field maps of
    phi_hat: q per layer (pooled h^2) and the correlation of two inputs at every layer. The
    untransformed phi's maps are far off, so the test tells the two apart."""
    depth, width, c0, nets = 20, 256, 0.3, 12
    exp = experiment(*overrides, "init=scaled_orthogonal", f"depth={depth}", f"model.width={width}")
    g = torch.Generator().manual_seed(1)
    a, e = torch.randn(4, 64, generator=g, dtype=torch.float64), torch.randn(4, 64, generator=g, dtype=torch.float64)
    a = a / a.norm(dim=1, keepdim=True)
    e = e - (e * a).sum(1, keepdim=True) * a
    b = c0 * a + math.sqrt(1 - c0**2) * e / e.norm(dim=1, keepdim=True)  # cosine c0 with a, kept by PLN
    q_meas, c_meas = np.zeros(depth), np.zeros(depth)
    for seed in range(nets):  # the maps are expectations over networks: one narrow net's q drifts
        torch.manual_seed(seed)
        model = build(exp, Inputs("vectors", (64,), 3)).double()
        initialize(model, exp.init, exp.model)
        ha, hb = _passes(model, a * 3.0), _passes(model, b * 0.2)  # PLN removes the input scales
        q_meas += np.array([h.pow(2).mean().item() for h in ha[:-1]]) / nets
        c_meas += np.array([((x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1))).mean().item()
                            for x, y in zip(ha[:-1], hb[:-1])]) / nets
    act = kernel_shaping.theory_activation(exp, model)
    q_pred = theory.length_map(act, 1.0, 0.0, 1.0, depth)
    c_pred = [c0]
    for _ in range(depth - 1):
        c_pred.append(network_c(act, c_pred[-1], 1))
    np.testing.assert_allclose(q_meas, q_pred, rtol=0.1)
    np.testing.assert_allclose(c_meas, c_pred, atol=0.04)
    assert np.max(np.abs(theory.length_map(exp.activation, 1.0, 0.0, 1.0, depth) - q_meas)) > 0.3


def test_pln_puts_every_input_at_length_1():
    exp = experiment("activation=tanh", "activation.transform=dks", "depth=20")
    model = build(exp, Inputs("vectors", (64,), 3))
    x = torch.randn(16, 64) * torch.linspace(0.1, 10, 16)[:, None]
    torch.testing.assert_close(kernel_shaping.network_inputs(model, x).pow(2).mean(1), torch.ones(16))
    narrow = build(exp, Inputs("vectors", (5,), 3))  # too few features: PLN would erase the input's length
    assert narrow.input_norm is None


@pytest.mark.parametrize("override,match", [
    ("model=resmlp", r"needs a plain network, model=mlp with model\.norm=none; got model=resmlp"),
    ("model.norm=batchnorm", "got model=mlp model.norm=batchnorm"),
    ("activation=linear", "needs a nonlinearity dks transforms, got activation=linear"),
    ("activation.c_val_0_target=0.5", r"activation\.c_val_0_target=0\.5 changes nothing"),
])
def test_a_transform_that_does_not_apply_is_refused_in_one_line(override, match):
    with pytest.raises(ConfigError, match=match) as err:
        experiment("activation=tanh", "activation.transform=dks", override)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("transform", ["tat", "dks"])
def test_a_leaky_relu_slope_the_transform_replaces_is_refused(transform):
    """dks solves leaky ReLU's slope: a slope set beside a transform would be silently ignored. Its
    untouched value is torch.nn.LeakyReLU's default (what leaky_relu.yaml sets), which passes."""
    assert LEAKY_RELU_SLOPE == inspect.signature(nn.LeakyReLU).parameters["negative_slope"].default
    assert OmegaConf.load(ROOT / "conf/activation/leaky_relu.yaml").negative_slope == LEAKY_RELU_SLOPE
    experiment("activation=leaky_relu", f"activation.transform={transform}", "depth=20")
    with pytest.raises(ConfigError, match=rf"^activation\.negative_slope=0\.2 changes nothing with "
                                          rf"activation\.transform={transform}: dks solves the slope") as err:
        experiment("activation=leaky_relu", f"activation.transform={transform}", "activation.negative_slope=0.2")
    assert "\n" not in str(err.value)


def test_tat_refuses_relu_and_an_unreachable_target_in_one_line():
    with pytest.raises(ConfigError, match="does not take relu"):
        experiment("activation=relu", "activation.transform=tat")
    exp = experiment("activation=leaky_relu", "activation.transform=tat", "depth=12")
    with pytest.raises(ConfigError, match=r"found no leaky_relu for depth 12 with c_val_0_target=0\.9: 12 leaky ReLU "
                                          r"layers reach C_f\(0\) <= 0\.8971 \(ReLU's\); valid: c_val_0_target < "
                                          r"0\.8971, or depth >= 13$") as err:
        build(exp, Inputs("vectors", (30,), 3))
    assert "\n" not in str(err.value)
    params = kernel_shaping.solve(experiment("activation=leaky_relu", "activation.transform=tat", "depth=13").activation, 13)
    assert network_c(kernel_shaping.expectations(exp.activation, params), 0.0, 13) == pytest.approx(0.9, abs=1e-6)


def test_the_most_a_leaky_relu_chain_reaches_is_relu_s_arc_cosine_map():
    """C_f(0) of 1..D ReLU layers: the arc-cosine kernel (Cho & Saul 2009) iterated from 0, in closed
    form, and above every leaky ReLU chain's (slopes 0.01 .. 0.9)."""
    chain = kernel_shaping.relu_chain_c0(20)
    c = 0.0
    for depth in range(1, 21):
        c = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
        assert chain[depth - 1] == pytest.approx(c, abs=1e-12)
        for slope in (0.01, 0.3, 0.9):
            assert network_c(PiecewiseLinear(slope), 0.0, depth) < chain[depth - 1]
    assert chain[11] < 0.9 < chain[12]


@pytest.mark.parametrize("fan_in,fan_out", [(10, 40), (40, 10), (16, 16)])
def test_scaled_orthogonal_is_dks_sampler_and_keeps_q(fan_in, fan_out):
    """The fill draws what dks's sampler draws (same RNG state) for torch's (fan_out, fan_in)
    layout, and the layer keeps lengths: W^T W = (fan_out / fan_in) I when expanding, W W^T = I
    otherwise, i.e. max(sqrt(fan_out / fan_in), 1) times a semi-orthogonal matrix."""
    from dks.pytorch.parameter_sampling_functions import scaled_uniform_orthogonal_

    cfg = experiment("init=scaled_orthogonal").init
    torch.manual_seed(3)
    w = INITS["scaled_orthogonal"].fill(torch.empty(fan_out, fan_in, dtype=torch.float64), cfg)
    torch.manual_seed(3)
    ref = torch.empty(fan_in, fan_out, dtype=torch.float64)
    scaled_uniform_orthogonal_(ref, delta=False)
    torch.testing.assert_close(w, ref.T)
    if fan_out > fan_in:
        torch.testing.assert_close(w.T @ w, fan_out / fan_in * torch.eye(fan_in, dtype=torch.float64))
    else:
        torch.testing.assert_close(w @ w.T, torch.eye(fan_out, dtype=torch.float64))
    assert INITS["scaled_orthogonal"].sigma_w2(cfg, fan_in, fan_out) == pytest.approx(
        fan_in * w.pow(2).mean().item(), rel=1e-9)


def _conv_jacobian_svals(init: str) -> torch.Tensor:
    """Singular values of dh^L/dh^1 of a linear 4-layer, 8-channel CNN on 5x5 maps (one stage)."""
    exp = experiment("model=cnn", "model.channels=[8]", "activation=linear", f"init={init}", "depth=4")
    torch.manual_seed(0)
    model = CNN(1, 3, [8], 4, nn.Identity).double()
    initialize(model, exp.init, exp.model)
    layers = [layer.conv for layer in model.stages[0]][1:]

    def hidden(h):
        for conv in layers:
            h = conv(h)
        return h

    jac = torch.autograd.functional.jacobian(hidden, torch.zeros(1, 8, 5, 5, dtype=torch.float64))
    return torch.linalg.svdvals(jac.reshape(200, 200))


def test_delta_orthogonal_linear_conv_net_is_an_isometry():
    """Xiao et al. 2018: with an orthogonal centre tap and zeros elsewhere the hidden Jacobian of a
    linear conv net has every singular value 1 (dynamical isometry); a full orthogonal 3x3 kernel
    (scaled_orthogonal) does not."""
    torch.testing.assert_close(_conv_jacobian_svals("delta_orthogonal"), torch.ones(200, dtype=torch.float64))
    spread = _conv_jacobian_svals("scaled_orthogonal")
    assert spread.max() / spread.min() > 2


def test_delta_orthogonal_is_zero_off_centre_and_orthogonal_at_centre():
    cfg = experiment("init=delta_orthogonal").init
    w = INITS["delta_orthogonal"].fill(torch.empty(12, 4, 3, 3, dtype=torch.float64), cfg)
    centre = w[:, :, 1, 1]
    assert w.abs().sum() == pytest.approx(centre.abs().sum().item())
    torch.testing.assert_close(centre.T @ centre, 3.0 * torch.eye(4, dtype=torch.float64))  # sqrt(12/4) scale


def test_saturation_of_a_shaped_tanh_is_tanh_s_own():
    """frac_saturated of phi_hat = b (tanh(a h + s) + o) counts |tanh(a h + s)| > 0.99, not |phi_hat|."""
    from initlab.measure.probes import probe_statistics
    from initlab.records import PROBE_COLUMNS

    exp = experiment("activation=tanh", "activation.transform=dks", "init=scaled_orthogonal", "depth=20")
    torch.manual_seed(0)
    model = build(exp, Inputs("vectors", (5,), 3))  # no PLN: large inputs reach tanh's flat part
    initialize(model, exp.init, exp.model)
    x = torch.randn(64, 5) * 30
    stats = probe_statistics(model, "tanh", x, torch.arange(64) % 3)
    shaped = kernel_shaping.shaped_sites(model)[0].activation
    with probing(model, shifts=False) as probe:
        model(x)
    h = next(iter(probe.taps.values())).pre
    expected = (torch.tanh(shaped.input_scale * h + shaped.input_shift).abs() > 0.99).double().mean().item()
    assert expected > 0.01  # the check has something to count, and phi_hat's own values would count otherwise
    assert abs((shaped(h).abs() > 0.99).double().mean().item() - expected) > 0.1
    measured = stats.values[0, PROBE_COLUMNS.index("frac_saturated")].item()
    assert measured == pytest.approx(expected, abs=1e-12)


def test_solving_leaves_numpy_s_global_generator_alone():
    """dks seeds np.random for its solver's starting points; a run's later NumPy draws must not
    depend on whether the transform was solved in this process before."""
    np.random.seed(7)
    expected = np.random.rand(3)
    np.random.seed(7)
    kernel_shaping._solve.cache_clear()
    kernel_shaping.solve(experiment("activation=tanh", "activation.transform=dks", "depth=30").activation, 30)
    np.testing.assert_array_equal(np.random.rand(3), expected)


def base_expectation(g, mean: float, std: float) -> float:
    """E g(y), y ~ N(mean, std^2), by scipy's adaptive quadrature in the base activation's own
    variable y = a x + s, split where g bends (|y| <= 20) and at mean +- 14 std: independent of
    initlab.choices.gaussian."""
    def integrand(y):
        return g(y) * math.exp(-0.5 * ((y - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    lo, hi = mean - 14 * std, mean + 14 * std
    edges = sorted({lo, hi, *(p for p in (-20.0, -5.0, -1.0, 0.0, 1.0, 5.0, 20.0) if lo < p < hi)})
    return sum(integrate.quad(integrand, lo, hi, epsabs=0, epsrel=1e-12, limit=500)[0]
               for lo, hi in zip(edges[:-1], edges[1:]))


@pytest.mark.parametrize("overrides", [
    ("activation.transform=dks", "activation.c_slope_1_target=1e4", "depth=2"),
    ("activation.transform=dks", "activation.c_slope_1_target=1e6", "depth=3"),
    ("activation.transform=tat", "activation.c_curve_target=0.01", "depth=20"),
    ("activation.transform=tat", "activation.c_curve_target=30", "depth=3")])
def test_extreme_targets_expectations_match_the_base_activation_s_own_integrals(overrides):
    """phi_hat(x) = b (tanh(a x + s) + o) at q = 1 is E over y ~ N(s, a^2) of the base: Q(1) and
    E[phi_hat'^2] (= C'(1) per layer: zeta^(1/D) for DKS, 1 for TAT) against scipy's quad there,
    at targets whose input scale a is 153 (DKS zeta = 1e4 at depth 2, 1e6 at depth 3: phi_hat'
    a spike 0.0065 wide, E[phi_hat'^2] came out 89.3 for 100 and Q(1) 0.99929) or 0.0235 (TAT
    tau = 0.01 at depth 20); Q'(1) = 1 (was 1.0031 for zeta = 1e6, phi'' by a step blind to a); and
    C(0) = 0 for DKS (E phi_hat = 0)."""
    exp = experiment("activation=tanh", *overrides)
    params = kernel_shaping.solve(exp.activation, exp.depth)
    act = kernel_shaping.expectations(exp.activation, params)
    a, s, o, b = (params[k] for k in ("input_scale", "input_shift", "output_shift", "output_scale"))
    second = base_expectation(lambda y: (b * (math.tanh(y) + o)) ** 2, s, abs(a))
    grad = base_expectation(lambda y: (b * a * (1 - math.tanh(y) ** 2)) ** 2, s, abs(a))
    slope = exp.activation.c_slope_1_target ** (1 / exp.depth) if exp.activation.transform.value == "dks" else 1.0
    assert float(act.second_moment(1.0)) == pytest.approx(second, rel=1e-10)
    assert float(act.grad_moment(1.0)) == pytest.approx(grad, rel=1e-10)
    assert (second, grad) == pytest.approx((1.0, slope), rel=1e-9)  # what dks solved for
    assert float(act.length_slope(1.0)) == pytest.approx(1.0, abs=1e-6)  # Q'(1) = 1 (phi'' by a step 1e-4 / a)
    if exp.activation.transform.value == "dks":
        assert act.kernel(1.0, 0.0) == pytest.approx(0.0, abs=1e-9)
        assert act.grad_kernel(1.0, 1.0) == pytest.approx(slope, rel=1e-9)


@pytest.mark.parametrize("zeta, depth", [(1e4, 2), (1e6, 3)])
def test_a_large_dks_target_s_run_predicts_zeta_s_chi1_and_keeps_q(tmp_path, zeta, depth):
    """The user's runs (digits, width 16, scaled_orthogonal): chi_1 = zeta^(1/D) = 100 (was 89.295),
    q_pred = 1 at every layer (PLN'd inputs; was 1, 0.9993, 0.9989, 0.9987 at depth 3) and the
    hidden Jacobian's predicted mean squared singular value 100^(D-1) (was 6924 for 1e4)."""
    cfg = compose_config("dataset=digits", "epochs=0", "model.width=16", "threads=1", "init=scaled_orthogonal",
                         "activation=tanh", "activation.transform=dks", f"activation.c_slope_1_target={zeta:g}",
                         f"depth={depth}")
    result = run_job(cfg, tmp_path)
    assert result["theory"]["chi1"] == pytest.approx(100.0, rel=1e-9)
    q_pred = [float(r["q_pred"]) for r in read_csv(tmp_path / "layers.csv") if r["epoch"] == "0"]
    assert q_pred == pytest.approx([1.0] * (depth + 1), rel=1e-7)  # q0 = 1 to float32 rounding (PLN)
    hidden = [r for r in read_csv(tmp_path / "jacobian.csv") if r["kind"] == "hidden"][0]
    assert float(hidden["mean_sq_sv_pred"]) == pytest.approx(100.0 ** (depth - 1), rel=1e-6)
