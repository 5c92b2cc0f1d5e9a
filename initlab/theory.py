"""Mean-field predictions for signal propagation in randomly initialised MLPs.

Conventions (Poole et al. 2016, Schoenholz et al. 2017; derived in docs/theory.md §1-§5):

* layer l computes h^l = W^l x^{l-1} + b^l with Var(W_ij) = sigma_w2 / fan_in, Var(b_i) = sigma_b2;
  x^l = phi(h^l) for hidden layers, the last layer's h are the logits;
* the input layer is linear: q^1 = sigma_w2 q0 + sigma_b2 with q0 = mean squared input entry;
* q^l is the second moment of pre-activations pooled over units and examples
  (torch: ``h.pow(2).mean()``), not the per-feature batch variance;
* backward quantities use the gradient-independence assumption and the *local* gain
  chi^(l) = sigma_{w,l+1}^2 E[phi'(sqrt(q^l) z)^2] of each layer.

Each activation's Gaussian expectations (phi, phi', closed forms where kinks spoil quadrature) and
each init's sigma_w^2 come from its choice in initlab.choices; this module composes them into
the length, correlation and gradient maps.

Every ``activation`` argument is a config name (any in initlab.choices.ACTIVATIONS), a mapping or
attribute object with ``name`` and its params (negative_slope, alpha, approximate), a
numpy-vectorised callable phi (assumed smooth; phi' by central differences), or a pair
(phi, dphi). Init configs are likewise mappings or attribute objects.

Pure numpy/scipy so that probes and analysis can both use it: of initlab it imports only the
choices, which load no torch.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, Optional

import numpy as np
from scipy import optimize

from initlab.choices import ACTIVATIONS, INITS
from initlab.choices.base import field as _field
from initlab.choices.gaussian import Expectations, Quadrature

_FD_STEP = 1e-5  # central-difference step for derivatives of user callables
_MARGINAL = 1e-9  # a map's slope this close to 1 is marginal (_depth): depth scales beyond 1e9 layers are infinite
# Lengths are searched on [0, 1e4]; a diverging length (q* = inf) is evaluated at the top.
_Q_GRID = np.concatenate([[0.0], np.logspace(-10.0, 4.0, 281)])
_Q_LARGE = float(_Q_GRID[-1])


# --------------------------------------------------------------------------- activations
def _resolve(activation: Any):
    """Activation spec -> object with its Gaussian integrals (initlab.choices.gaussian).

    Accepts a config name (its parameters at their defaults), a mapping/object with ``name`` and
    its params, a numpy-vectorised callable phi (phi' by central differences), or a pair
    (phi, dphi). Raises ValueError for a name with no choice.
    """
    if isinstance(activation, Expectations):  # already resolved
        return activation
    if isinstance(activation, tuple):
        return Quadrature(*activation)
    if callable(activation) and _field(activation, "name") is None:
        h = _FD_STEP
        return Quadrature(activation, lambda x: (activation(x + h) - activation(x - h)) / (2 * h))
    name = activation if isinstance(activation, str) else _field(activation, "name")
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    return ACTIVATIONS[name].expectations(activation)


# --------------------------------------------------------------------------- initialisations
def effective_sigma_w2(init_cfg: Any, fan_in: int, fan_out: int) -> float:
    """sigma_w^2 = fan_in * E[W_ij^2] of one Linear(fan_in -> fan_out) under ``init_cfg``.

    ``init_cfg`` is a mapping or object with the project's init fields (missing ones at their
    YAML defaults); each init's formula is its choice's ``sigma_w2`` (initlab.choices.inits):
    e.g. he: factor * fan_in / fan, xavier: 2 gain^2 fan_in / (fan_in + fan_out), orthogonal:
    gain^2 fan_in / max(fan_in, fan_out), torch_default: 1/3. Raises ValueError for an unknown name.
    """
    name = _field(init_cfg, "name")
    if name not in INITS:
        raise ValueError(f"unknown init {name!r}")
    return INITS[name].sigma_w2(init_cfg, fan_in, fan_out)


def effective_sigma_b2(bias_init: Any = "zeros", bias_std: float = 0.0) -> float:
    """Bias variance sigma_b^2: 0 for 'zeros', bias_std^2 for 'normal' (inf where it overflows a
    float: ``** 2`` raised OverflowError for bias_std = 1e300 and crashed the job)."""
    name = bias_init.value if isinstance(bias_init, Enum) else bias_init
    if name == "zeros":
        return 0.0
    if name == "normal":
        return float(bias_std) * float(bias_std)
    raise ValueError(f"unknown bias init {bias_init!r}")


# --------------------------------------------------------------------------- forward maps
def _propagate(act, sigma_w2: np.ndarray, sigma_b2: np.ndarray, q0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-example lengths q^1..q^L, shape (L,) + q0.shape (the first layer is linear), and the
    second moments V(q^1)..V(q^{L-1}) of the activations they were propagated through."""
    q, second = [sigma_w2[0] * q0 + sigma_b2[0]], []
    for sw2, sb2 in zip(sigma_w2[1:], sigma_b2[1:]):
        second.append(act.second_moment(q[-1]))
        q.append(sw2 * second[-1] + sb2)
    return np.stack(q), np.stack(second) if second else np.empty((0,) + q0.shape)


def _per_layer(value: Any, depth: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=float), (depth,))


def length_map(activation: Any, sigma_w2: Any, sigma_b2: Any, q0: Any, depth: int) -> np.ndarray:
    """Predicted pre-activation second moments q^1..q^depth (convention: linear input layer).

    sigma_w2 and sigma_b2 are scalars or per-layer sequences of length ``depth``. q0 is the mean
    squared input entry, a scalar or one value per example; with several examples the prediction
    is made per example and averaged, since the map is nonlinear (no Jensen bias).
    """
    q, _ = _propagate(_resolve(activation), _per_layer(sigma_w2, depth), _per_layer(sigma_b2, depth),
                      np.atleast_1d(np.asarray(q0, dtype=float)))
    return q.reshape(depth, -1).mean(axis=1)


def fixed_point(activation: Any, sigma_w2: float, sigma_b2: float = 0.0) -> float:
    """Fixed point q* of q -> sigma_w2 V(q) + sigma_b2 reached from small lengths.

    Returns 0.0 when zero attracts small lengths (possible only with sigma_b2 = 0 and phi(0) = 0),
    inf when the length grows without bound, and the first stable root otherwise (a + -> - sign
    change of sigma_w2 V(q) + sigma_b2 - q, searched on [1e-10, 1e4]; tanh and sigmoid have only
    one). linear/relu/leaky_relu are exact: q* = sigma_b2/(1 - sigma_w2 g) with g = V(q)/q; at
    sigma_w2 g = 1 (relative tolerance 1e-9) every q is a fixed point when sigma_b2 = 0 (returns
    nan: the length stays where the input puts it) and q diverges linearly otherwise (inf).
    """
    act = _resolve(activation)
    if act.gain is not None:
        slope = sigma_w2 * act.gain
        if math.isclose(slope, 1.0, rel_tol=1e-9):
            return math.nan if sigma_b2 == 0 else math.inf
        return sigma_b2 / (1.0 - slope) if slope < 1 else math.inf

    def excess(q):
        return sigma_w2 * act.second_moment(q) + sigma_b2 - q

    positive = excess(_Q_GRID) > 0
    if not positive[0] and not positive[1]:
        return 0.0
    drops = np.flatnonzero(positive[:-1] & ~positive[1:])
    if drops.size == 0:
        return math.inf
    i = drops[0]
    return optimize.brentq(excess, _Q_GRID[i], _Q_GRID[i + 1], xtol=1e-300, rtol=1e-14)


def _at_fixed_point(q_star: float) -> float:
    """Where to evaluate gains at q*: the top of the search range for q* = inf (large-q limit);
    anywhere for q* = nan, which only the homogeneous activations return (constant gains)."""
    return _Q_LARGE if q_star == math.inf else (1.0 if math.isnan(q_star) else q_star)


def chi1(activation: Any, sigma_w2: float, sigma_b2: float = 0.0, q_star: Optional[float] = None) -> float:
    """chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2]: slope of the correlation map at c = 1 and the
    per-layer gradient/Jacobian gain at the fixed point (order < 1 < chaos). ``q_star``: the
    fixed point the network's lengths sit at where the caller knows it (a kernel-shaped net keeps
    q = 1); None takes ``fixed_point``'s, reached from small lengths."""
    act = _resolve(activation)
    q = _at_fixed_point(fixed_point(act, sigma_w2, sigma_b2) if q_star is None else q_star)
    return float(sigma_w2 * act.grad_moment(q))


def _depth(rate: float) -> float:
    """Depth scale -1/ln|rate| of a geometric approach; inf for marginal or growing maps. A rate
    within ``_MARGINAL`` of 1 counts as marginal: the expectations behind it are accurate to about
    1e-10 (quadrature, finite differences), so it cannot be told from 1 (TAT's exact Q'(1) = 1 came
    out as 1 - 1.1e-16, a depth scale of 2**53 layers)."""
    rate = abs(rate)
    if rate >= 1.0 - _MARGINAL:
        return math.inf
    return 0.0 if rate == 0.0 else -1.0 / math.log(rate)


def _correlation_fixed_point(act, sigma_w2: float, sigma_b2: float, q: float) -> float:
    """Stable fixed point c* < 1 of the correlation map in the chaotic phase (chi_1 > 1).

    g(c) = c-map(c) - c is convex on [0, 1] with g(0) >= 0, g(1) = 0 and g'(1) > 0, so it has
    a single root below 1; c* = 0 when g(0) = 0 (odd phi without bias).
    """
    def excess(c):
        return (sigma_w2 * act.kernel(q, c) + sigma_b2) / q - c

    if excess(0.0) <= 1e-12:
        return 0.0
    hi = next((1.0 - 2.0**-k for k in range(1, 50) if excess(1.0 - 2.0**-k) < 0), None)
    if hi is None:  # chi_1 so close to 1 that c* cannot be told apart from 1
        return 1.0
    lo = 0.0 if hi == 0.5 else 1.0 - 2.0 * (1.0 - hi)
    return optimize.brentq(excess, lo, hi, xtol=1e-14)


def depth_scales(activation: Any, sigma_w2: float, sigma_b2: float = 0.0,
                 q_star: Optional[float] = None) -> tuple[float, float]:
    """(xi_q, xi_c): depth scales of the approach of lengths to q* and correlations to c*.

    xi_q = -1/ln|dq^{l+1}/dq^l| at q*. xi_c = -1/ln chi_c with chi_c = sigma_w2 E[phi'(u_a)
    phi'(u_b)] at (q*, c*): chi_c = chi_1 in the ordered phase (c* = 1), the slope at the
    stable c* < 1 in the chaotic phase; both diverge at chi_1 = 1. Without a finite non-zero q*
    (q* = 0, inf or marginal) the correlation map becomes scale-free (linear near 0, relu-like at
    large q, arc-cosine for relu) with slope 1 at c = 1, so xi_c = inf; the gradient depth scale
    -1/ln chi_1 is then the informative one. ``q_star`` as for ``chi1``.
    """
    act = _resolve(activation)
    q_star = fixed_point(act, sigma_w2, sigma_b2) if q_star is None else q_star
    if not math.isfinite(q_star):
        return math.inf, math.inf
    xi_q = _depth(float(sigma_w2 * act.length_slope(q_star)))
    if q_star == 0.0:
        return xi_q, math.inf
    chi_1 = float(sigma_w2 * act.grad_moment(q_star))
    if chi_1 <= 1.0:
        return xi_q, _depth(chi_1)
    c_star = _correlation_fixed_point(act, sigma_w2, sigma_b2, q_star)
    return xi_q, _depth(sigma_w2 * act.grad_kernel(q_star, c_star))


def critical_sigma_w2(activation: Any, sigma_b2: float = 0.0) -> float:
    """sigma_w2 on the order/chaos boundary (chi_1 = 1) for bias variance sigma_b2.

    Walks the critical line parameterised by its fixed point, sigma_w2 = 1/E[phi'^2](q*) and
    sigma_b2 = q* - V(q*)/E[phi'^2](q*), to the smallest q* with the requested sigma_b2
    (q* = 0 when sigma_b2 = 0 and phi(0) = 0, e.g. tanh: 1/phi'(0)^2 = 1). For linear/relu/
    leaky_relu chi_1 does not depend on q: 1/g for every sigma_b2.
    """
    act = _resolve(activation)
    if act.gain is not None:
        return 1.0 / act.gain

    def excess(q):
        return q - act.second_moment(q) / act.grad_moment(q) - sigma_b2

    reached = excess(_Q_GRID) >= 0
    if reached[0]:
        return float(1.0 / act.grad_moment(0.0))
    if not reached.any():
        raise ValueError(f"no critical point with q* <= {_Q_LARGE:g} for sigma_b2={sigma_b2}")
    i = np.argmax(reached)
    q_c = optimize.brentq(excess, _Q_GRID[i - 1], _Q_GRID[i], xtol=1e-300, rtol=1e-14)
    return float(1.0 / act.grad_moment(q_c))


# --------------------------------------------------------------------------- backward pass
def backward_gains(activation: Any, sigma_w2_next: Any, q: Any) -> np.ndarray:
    """Local backward gains chi^(l) = sigma_{w,l+1}^2 E[phi'(sqrt(q^l) z)^2] of hidden layers.

    ``q[k]`` is the length of hidden layer k (extra trailing axes, e.g. examples, allowed) and
    ``sigma_w2_next[k]`` the sigma_w^2 of the layer reading it. E||delta^l||^2 =
    chi^(l) E||delta^{l+1}||^2 with widths cancelling; use the actual transient q^l, since
    chi_1 only applies once q^l = q*.
    """
    q = np.asarray(q, dtype=float)
    sw2 = np.asarray(sigma_w2_next, dtype=float).reshape((-1,) + (1,) * (q.ndim - 1))
    return sw2 * _resolve(activation).grad_moment(q)


def delta_sq_ratio(activation: Any, sigma_w2_next: Any, q: Any) -> np.ndarray:
    """E||delta^l||^2 / E||delta^L||^2 for l = 1..L, where q holds the L-1 hidden lengths.

    Products of backward gains from layer l up to the output (the last entry is 1); per example
    when q has an example axis. Per-unit second moments follow by a factor N_L/N_l.
    """
    return _products_to_output(backward_gains(activation, sigma_w2_next, q))


def _products_to_output(gains: np.ndarray) -> np.ndarray:
    """prod_{k >= l} gains[k] for each l, then 1 for the output layer (delta_sq_ratio's values)."""
    return np.concatenate([np.cumprod(gains[::-1], axis=0)[::-1], np.ones((1,) + gains.shape[1:])])


def jacobian_mean_sq_sv_pred(activation: Any, sigma_w2_next: Any, q: Any) -> float:
    """Mean squared singular value of the hidden-to-hidden Jacobian dh^K/dh^1 (square layers).

    Equals prod_{l=1}^{K-1} chi^(l): pass the lengths q^1..q^{K-1} and sigma_w^2 of layers 2..K;
    with an example axis in q the per-example products are averaged, as the measured mean s^2
    pools the per-example Jacobians. It is the criticality test, the same number as the
    backward gain product; the spread of the spectrum is not predicted here.
    """
    return float(np.prod(backward_gains(activation, sigma_w2_next, q), axis=0).mean())


# --------------------------------------------------------------------------- whole network
def predict_mlp(layer_dims: Any, init_cfg: Any, activation: Any, q0: Any,
                bias_init: Any = "zeros", bias_std: float = 0.0,
                delta_out_rms: Any = 1.0) -> dict[str, np.ndarray]:
    """Per-layer mean-field predictions at initialisation for an MLP, ready to set beside probes.

    Args:
        layer_dims: (fan_in, fan_out) of every Linear in order, the output (logit) layer last;
            e.g. [(784, 128)] + [(128, 128)] * (depth - 1) + [(128, 10)].
        init_cfg: the weight init config, applied to every Linear (see effective_sigma_w2).
        activation: the hidden activation (any form in the module docstring); no activation
            follows the output layer.
        q0: mean squared input entry per probe example, (x ** 2).mean(dim=1); or a scalar.
        bias_init, bias_std: the model's bias init ('zeros' or 'normal') and its std.
        delta_out_rms: measured RMS over examples and classes of dLoss/d(logits) on the probe
            batch (depends on labels and loss reduction, so it anchors the backward prediction);
            scalar or one value per example. The default 1 gives RMS relative to the output.

    Returns a dict of arrays with one entry per Linear layer l = 1..len(layer_dims):
        layer, fan_in, fan_out, sigma_w2;
        q_pred: pooled second moment of pre-activations, h.pow(2).mean();
        post_mean_pred, post_var_pred: pooled mean and variance of phi(h) (nan at the output);
        chi_local: backward gain chi^(l) into layer l from layer l+1 (nan at the output);
        delta_rms_pred: RMS over examples and units of dLoss/dh^l;
        jac_msv_pred: mean squared singular value of dh^l/dh^1 (1 at l = 1; rectangular layers
            average over min(N_1, N_l) singular values).
    Per-example predictions are averaged over the probe examples (the maps are nonlinear).
    """
    dims = np.asarray(layer_dims, dtype=int).reshape(-1, 2)
    fan_in, fan_out = dims[:, 0], dims[:, 1]
    n_layers = len(dims)
    act = _resolve(activation)
    sigma_w2 = np.array([effective_sigma_w2(init_cfg, int(i), int(o)) for i, o in dims])
    sigma_b2 = _per_layer(effective_sigma_b2(bias_init, bias_std), n_layers)
    # each Gaussian expectation once per (layer, example): by quadrature they are the cost here
    q, second = _propagate(act, sigma_w2, sigma_b2, np.atleast_1d(np.asarray(q0, dtype=float)))
    hidden, nan = q[:-1], np.full(1, np.nan)

    gains = backward_gains(act, sigma_w2[1:], hidden)
    out_sq = fan_out[-1] * np.broadcast_to(np.asarray(delta_out_rms, dtype=float) ** 2, q.shape[1:])
    delta_sq = _products_to_output(gains) * out_sq
    jac = np.concatenate([np.ones((1,) + q.shape[1:]), np.cumprod(gains, axis=0)])
    post_mean = act.mean(hidden).mean(axis=1)
    post_var = second.mean(axis=1) - post_mean**2
    return {
        "layer": np.arange(1, n_layers + 1),
        "fan_in": fan_in,
        "fan_out": fan_out,
        "sigma_w2": sigma_w2,
        "q_pred": q.mean(axis=1),
        "post_mean_pred": np.concatenate([post_mean, nan]),
        "post_var_pred": np.concatenate([post_var, nan]),
        "chi_local": np.concatenate([gains.mean(axis=1), nan]),
        "delta_rms_pred": np.sqrt(delta_sq.mean(axis=1) / fan_out),
        "jac_msv_pred": jac.mean(axis=1) * fan_out / np.minimum(fan_out[0], fan_out),
    }
