"""Kernel-shaped activations: TAT (Zhang et al. 2022) and DKS (Martens et al. 2021) through
DeepMind's ``dks`` package, solved for the network they are built into.

Both methods replace phi by phi_hat(x) = b (phi(a x + s) + o) (for leaky ReLU: b leaky_relu(x, slope)
with the slope solved) so that the whole network's C map, the correlation map of two inputs of
length q = 1, is as close to the identity as its depth allows: TAT sets C_f(0) = eta for leaky
ReLU nets and C''_f(1) = tau for smooth ones, with C_f'(1) = 1; DKS sets C_f'(1) = zeta and
C_f(0) = 0, each local Q map having Q(1) = 1, Q'(1) = 1. The targets hold for the network's
"maximal" subnetwork; ``dks`` finds the local map that reaches them from the subnetwork maximizing
function M_{f,r}(x) of the architecture (TAT appendix, "Additional details and pseudocode"). For a
plain chain of D nonlinear layers every subnetwork is a prefix, and the C maps are increasing, so
M_{f,r}(x) = r^{o D}(x): r applied D times. D is counted from the built model's activation sites.

The promises assume each weight layer keeps q and c (``init=scaled_orthogonal``, zero biases) and
inputs of length 1: dks's per-location normalization (PLN) is applied to the inputs of a shaped
network with at least ``PLN_MIN_FEATURES`` input features (below that it would remove too much of
the input, as dks warns; those inputs keep their own lengths, and the theory predicts from them).

Only the plain MLP (``model=mlp model.norm=none``) is shaped here: residual sums, normalization,
max-pooling and attention change the maximizing function and are not derived.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from initlab.choices import ACTIVATIONS, build_activation
from initlab.choices.base import field
from initlab.choices.gaussian import PiecewiseLinear, Quadrature
from initlab.config import ConfigError, ExperimentConfig, Transform, check_transform, dks_name

log = logging.getLogger(__name__)
PLN_MIN_FEATURES = 20  # dks warns that PLN without a homogeneous coordinate loses information below this

_METHODS = {Transform.tat: "TAT", Transform.dks: "DKS"}


def plain_chain(depth: int) -> Callable[[float, Callable[[float], float]], float]:
    """The subnetwork maximizing function M_{f,r}(x) = r^{o depth}(x) of a chain of ``depth``
    nonlinear layers (TAT, appendix: a composition of layers composes their maps)."""
    def subnet_max(x: float, r: Callable[[float], float]) -> float:
        for _ in range(depth):
            x = r(x)
        return x

    return subnet_max


@functools.lru_cache(maxsize=64)
def _solve(name: str, method: str, targets: tuple, depth: int) -> dict[str, float]:
    from dks.base import activation_transform  # the solver dks's public get_transformed_activations wraps

    dks_params = dict(t for t in targets if t[0] == "c_slope_1_target")
    tat_params = dict(t for t in targets if t[0] != "c_slope_1_target")
    dks_logger = logging.getLogger("absl")
    level = dks_logger.level
    dks_logger.setLevel(logging.ERROR)  # its per-solve INFO lines and its DKS+relu warning
    rng = np.random.get_state()  # dks seeds NumPy's global generator for its starting points
    try:
        with np.errstate(all="ignore"):
            params = activation_transform._get_activations_params(
                [name], method=method, dks_params=dks_params, tat_params=tat_params,
                subnet_max_func=plain_chain(depth))[name]
    except ValueError as err:  # an unreachable target for this depth: dks's message is long
        raise ConfigError(_unreachable(name, method, dict(targets), depth, str(err).split(".")[0])) from None
    finally:
        dks_logger.setLevel(level)
        np.random.set_state(rng)
    return {k: float(v) for k, v in params.items()}


def relu_chain_c0(max_depth: int) -> list[float]:
    """C_f(0) of chains of 1..``max_depth`` ReLU layers at q = 1 (the normalized arc-cosine map
    iterated from 0): the most a leaky ReLU chain of each depth reaches, its slope at 0 (TAT's eta
    must be below it)."""
    relu, c, out = PiecewiseLinear(0.0), 0.0, []
    for _ in range(max_depth):
        c = float(relu.kernel(1.0, c) / relu.second_moment(1.0))
        out.append(c)
    return out


def _unreachable(name: str, method: str, targets: dict[str, float], depth: int, reason: str) -> str:
    """One line for targets dks found no transform for: for TAT's leaky ReLU, the eta this depth
    reaches and the depth this eta needs; otherwise dks's reason and its defaults."""
    head = f"activation.transform={method.lower()} found no {name} for depth {depth}"
    if name != "leaky_relu" or method != "TAT":
        return (f"{head} with these targets ({reason}); valid: targets nearer the identity map "
                f"(dks's defaults: c_val_0_target 0.9, c_curve_target 0.3, c_slope_1_target 1.5)")
    eta = targets.get("c_val_0_target", 0.9)
    chain = relu_chain_c0(max(depth, 10_000))  # C(0) -> 1 slowly: an eta near 1 may need thousands of layers
    most = chain[depth - 1]
    needed = next((d for d, c in enumerate(chain, start=1) if c >= eta), None)
    deeper = f", or depth >= {needed}" if needed else ""
    return (f"{head} with c_val_0_target={eta:g}: {depth} leaky ReLU layers reach C_f(0) <= {most:.4f} (ReLU's); "
            f"valid: c_val_0_target < {most:.4f}{deeper}")


def solve(activation: Any, depth: int) -> dict[str, float]:
    """The transformation's parameters for ``depth`` nonlinear layers in a chain: dks's
    input_scale, input_shift, output_shift, output_scale (those it uses) and, for leaky ReLU, the
    solved negative_slope. Cached per (activation, targets, depth); raises ConfigError where dks
    finds none (e.g. TAT's eta = 0.9 is out of reach of a leaky ReLU net under 13 layers deep)."""
    transform = Transform(field(activation, "transform", "none"))
    if transform == Transform.none:
        raise ValueError("solve() needs activation.transform tat or dks")
    targets = tuple((k, float(field(activation, k))) for k in ("c_val_0_target", "c_curve_target", "c_slope_1_target")
                    if field(activation, k) is not None)
    return _solve(dks_name(activation), _METHODS[transform], targets, depth)


class ShapedActivation(nn.Module):
    """phi_hat(x) = output_scale (phi(input_scale x + input_shift) + output_shift), the composition
    dks's transformed activations compute; phi is the project's module for the base choice."""

    def __init__(self, base: nn.Module, params: dict[str, float]):
        super().__init__()
        self.base = base
        self.params = dict(params)
        p = self.params
        self.input_scale, self.input_shift = p.get("input_scale", 1.0), p.get("input_shift", 0.0)
        self.output_shift, self.output_scale = p.get("output_shift", 0.0), p.get("output_scale", 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_scale * (self.base(self.input_scale * x + self.input_shift) + self.output_shift)

    def unshaped(self, post: torch.Tensor) -> torch.Tensor:
        """phi's own output from phi_hat's (for the base choice's saturation rule)."""
        return post / self.output_scale - self.output_shift

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:.6g}" for k, v in self.params.items())


def _base_module(activation: Any, params: dict[str, float]) -> nn.Module:
    if "negative_slope" in params:  # dks solved the leaky ReLU's slope
        return nn.LeakyReLU(params["negative_slope"])
    return build_activation(activation)


def shaped_sites(model: nn.Module) -> list[nn.Module]:
    """The activation sites of ``model`` whose activation is a ShapedActivation, in module order."""
    from initlab.models.sites import ActivationSite

    return [m for m in model.modules() if isinstance(m, ActivationSite) and isinstance(m.activation, ShapedActivation)]


def solved(model: nn.Module) -> Optional[dict[str, Any]]:
    """What ``shape`` put into ``model``, for result.json: the solved parameters its activations
    share (``solve``'s keys) and ``pln_inputs`` (whether its inputs are per-location normalized);
    None for a model with no shaped activation."""
    sites = shaped_sites(model)
    if not sites:
        return None
    return {**sites[0].activation.params, "pln_inputs": getattr(model, "input_norm", None) is not None}


def check_solvable(exp: ExperimentConfig) -> None:
    """ConfigError (one line) before anything is built where ``shape`` would refuse ``exp``: a
    transform that does not apply, or targets dks cannot reach at ``exp.depth`` activation layers
    (a plain MLP has one per hidden layer). The solve is cached, so the build reuses it."""
    if exp.activation.transform == Transform.none:
        return
    check_transform(exp.activation, exp.model)
    solve(exp.activation, exp.depth)


def shape(model: nn.Module, exp: ExperimentConfig) -> Optional[dict[str, float]]:
    """Replace every activation of the built ``model`` by its shaped version, solved for the
    model's own depth (its number of activation sites), and switch on PLN of its inputs where it
    applies; returns the solved parameters (None with ``transform=none``). ConfigError (one line)
    where the transform does not apply (initlab.config.check_transform)."""
    if exp.activation.transform == Transform.none:
        return None
    check_transform(exp.activation, exp.model)
    from initlab.models.mlp import MLP
    from initlab.models.sites import ActivationSite

    if not isinstance(model, MLP) or model.norms is not None:
        raise ConfigError(f"activation.transform needs a plain MLP, got {type(model).__name__}")
    acts = [m for m in model.modules() if isinstance(m, ActivationSite)]
    params = solve(exp.activation, len(acts))
    for site in acts:
        site.activation = ShapedActivation(_base_module(exp.activation, params), params)
    if model.hidden[0].in_features >= PLN_MIN_FEATURES:
        model.input_norm = PerLocationNormalization()
    log.info("activation.transform=%s for %d layers: %s %s%s", exp.activation.transform.value, len(acts),
             exp.activation.name, ", ".join(f"{k}={v:.6g}" for k, v in params.items()),
             ", PLN inputs" if model.input_norm is not None else "")
    return params


class PerLocationNormalization(nn.Module):
    """dks's PLN on flattened (N, F) inputs without a homogeneous coordinate: every example scaled to
    mean squared entry 1, so the network's input lengths are the q = 1 TAT and DKS assume."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from dks.pytorch.data_preprocessing import per_location_normalization

        return per_location_normalization(x, homog_mode="off")


def network_inputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``model``'s first Linear reads from the batch ``x``: flattened, after PLN if it has one."""
    read = getattr(model, "network_input", None)
    return read(x) if read is not None else x.flatten(1)


def expectations(activation: Any, params: dict[str, float]) -> Any:
    """The mean-field theory's view (initlab.choices.gaussian) of phi_hat with ``params``: closed
    forms for TAT's leaky ReLU (a rescaled PiecewiseLinear), quadrature otherwise, split at the
    base activation's kinks moved by the input scale and shift (DKS's shifted leaky ReLU: on a
    trapezoid grid its E[phi'^2] was 0.45% off, ln chi_1 and the depth scales tens of percent), with
    phi_hat's bends where a x + s reaches the base's: a scale 1 / a wide (DKS's tanh for zeta = 1e4 at
    depth 2 has a = 153; a rule blind to that gave chi_1 = 89.3 for 100)."""
    if set(params) == {"negative_slope", "output_scale"}:  # TAT's leaky ReLU: still positively homogeneous
        return ScaledPiecewiseLinear(params["negative_slope"], params["output_scale"])
    if "negative_slope" in params:  # DKS's leaky ReLU: slope solved, shifted
        base = PiecewiseLinear(params["negative_slope"])
    else:
        base = ACTIVATIONS[field(activation, "name")].expectations(activation)
    a, s = params.get("input_scale", 1.0), params.get("input_shift", 0.0)
    o, b = params.get("output_shift", 0.0), params.get("output_scale", 1.0)
    kinks = tuple((k - s) / a for k in base.kinks) if a else ()  # base's kinks, where a x + s reaches them
    scale, centre = (base.bend_scale / abs(a), (base.bend_centre - s) / a) if a else (1.0, 0.0)  # where phi_hat bends
    return Quadrature(lambda x: b * (base.phi(a * x + s) + o), lambda x: b * a * base.dphi(a * x + s), kinks,
                      scale, centre)


def kept_length(model: nn.Module, sigma_w2: float, sigma_b2: float) -> Optional[float]:
    """The length q = 1 a shaped ``model`` keeps from layer to layer, where its weight layers keep q
    (sigma_w^2 = 1, sigma_b^2 = 0): TAT and DKS solve phi_hat for Q(1) = 1, a fixed point the
    theory's search from small lengths does not find (DKS's is tangent: Q'(1) = 1). There chi_1 is
    C_f'(1) per layer: zeta^(1/D) for DKS, 1 for TAT. None for an unshaped model or other weights."""
    if not shaped_sites(model) or sigma_b2 != 0 or not math.isclose(sigma_w2, 1.0, rel_tol=1e-9):
        return None
    return 1.0


class ScaledPiecewiseLinear(PiecewiseLinear):
    """b * leaky_relu(x, s): every expectation of PiecewiseLinear(s) times b (once or squared)."""

    def __init__(self, negative_slope: float, scale: float):
        super().__init__(negative_slope)
        self.b = float(scale)
        self.gain = self.gain * self.b**2  # V(q) = gain q and E[phi'^2] = gain read it

    def mean(self, q):
        return self.b * super().mean(q)

    def kernel(self, q, c):
        return self.b**2 * super().kernel(q, c)

    def grad_kernel(self, q, c):
        return self.b**2 * super().grad_kernel(q, c)


def theory_activation(exp: ExperimentConfig, model: nn.Module) -> Any:
    """The activation the mean-field theory should use for this run: ``exp.activation`` itself, or
    phi_hat's expectations with the parameters the built ``model`` carries."""
    sites = shaped_sites(model)
    if not sites:
        return exp.activation
    return expectations(exp.activation, sites[0].activation.params)
