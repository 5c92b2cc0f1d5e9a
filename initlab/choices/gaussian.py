"""Gaussian expectations of a nonlinearity phi: what the mean-field theory reads of an activation.

Each object answers, for pre-activation lengths q (arrays), expectations over z ~ N(0, 1) at
argument sqrt(q) z: ``second_moment`` E[phi^2] (V), ``grad_moment`` E[phi'^2], ``mean`` E[phi],
``length_slope`` dV/dq (= E[phi'^2 + phi phi''] by Stein's lemma), and the two-input
``kernel`` / ``grad_kernel`` E[phi(u_a) phi(u_b)] / E[phi'(u_a) phi'(u_b)] for centred jointly
Gaussian u_a, u_b of variance q and correlation c. ``gain`` is g with V(q) = g q exactly for
positively homogeneous activations, else None.

Closed forms for piecewise-linear phi (linear, relu, leaky_relu) and for elu/selu in one input
(kinks spoil quadrature). A phi with kinks otherwise (elu/selu's two-input kernels, a shifted relu
of kernel shaping): Gauss-Legendre panels on the pieces between its kinks. Otherwise the trapezoid
rule on z in [-12, 12]: it converges exponentially for smooth integrands and stays below 1e-8
relative error up to q ~ 100, where Gauss-Hermite with 100 nodes is only that good for q <= 1.
One-input integrals halve the step until two successive rules agree (nested rules, so each halving
only adds the midpoints): a length q ~ 1 needs ~100 nodes where q ~ 100 needs the full 1601.
Derivations: docs/theory.md. Pure NumPy/SciPy.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import special

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _trapezoid_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    z = np.linspace(-12.0, 12.0, n)
    return z, np.exp(-0.5 * z**2) * (24.0 / (n - 1)) / _SQRT_2PI


def _nested_levels(intervals: int, halvings: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Trapezoid rules on [-12, 12] with ``intervals`` * 2^k intervals, k = 0..halvings, as the
    nodes each adds to the one before (all nodes first, then the midpoints): (nodes, N(0, 1)
    density at them, step)."""
    levels, n = [], intervals
    z = np.linspace(-12.0, 12.0, n + 1)
    for k in range(halvings + 1):
        step = 24.0 / n
        levels.append((z, np.exp(-0.5 * z**2) / _SQRT_2PI, step))
        n *= 2
        z = -12.0 + 24.0 / n * np.arange(1, n, 2)
    return levels


_LEVELS = _nested_levels(50, 5)  # one-input integrals: 51 nodes, halved up to 1601
_FINEST = (np.concatenate([z for z, _, _ in _LEVELS]), np.concatenate([w for _, w, _ in _LEVELS]), _LEVELS[-1][2])
_AGREE = 1e-10  # successive rules agreeing to this fraction of E|f| end the halving
_X_STEP = 0.5  # ... once the coarser one samples phi at most this far apart
_Z2, _W2 = _trapezoid_rule(601)  # two-input integrals (tensor grid)


_ROWS = 128  # q values per block: a block's temporaries stay in the CPU's cache


def _gauss(f: Callable[[np.ndarray], np.ndarray], q) -> np.ndarray:
    """E_z f(sqrt(q) z), z ~ N(0, 1), elementwise over the array q.

    Evaluated in blocks of ``_ROWS`` values of q: the mean-field predictions pass one q per layer
    and probe example (e.g. 50 x 1000), and one (q.size, 1601) pass through NumPy's temporaries
    ran 4-13x slower than blocks that fit in cache (same values to 1e-15)."""
    root = np.sqrt(np.asarray(q, dtype=float))
    flat = root.reshape(-1)
    out = np.empty_like(flat)
    for start in range(0, flat.size, _ROWS):
        out[start:start + _ROWS] = _halving_trapezoid(f, flat[start:start + _ROWS])
    return out.reshape(root.shape)


def _halving_trapezoid(f: Callable[[np.ndarray], np.ndarray], root: np.ndarray) -> np.ndarray:
    """E_z f(root z) per entry of the 1-D array ``root``: the trapezoid rule, its step halved until
    two successive rules differ by at most ``_AGREE`` E|f| (then the finer one's error is far
    smaller: the error of a smooth integrand squares with each halving, that of a kinked one falls
    4x) or the finest rule (1601 nodes) is reached. Agreement counts only once the coarser rule's
    step in phi's argument, step * root, is at most ``_X_STEP``: rules too coarse to see phi's
    bend near 0 agree on a wrong value (gelu at q = 600: both off by 3e-5). A NaN length gives NaN."""
    estimate = np.empty_like(root)
    zero = root == 0  # E f(0 z) = f(0) exactly, not the rule's weights summing to 1 - 1e-16
    if zero.any():
        estimate[zero] = f(np.zeros((int(zero.sum()), 1)))[:, 0]
    full = root * _LEVELS[-2][2] > _X_STEP  # no early agreement can count: the finest rule at once
    if full.any():
        estimate[full] = f(root[full, None] * _FINEST[0]) @ _FINEST[1] * _FINEST[2]
    rows = np.flatnonzero(~(full | zero))
    nodes, density, coarse = _LEVELS[0]
    values = f(root[rows, None] * nodes)
    total, size = np.zeros_like(root), np.zeros_like(root)
    total[rows], size[rows] = values @ density, np.abs(values) @ density
    estimate[rows] = total[rows] * coarse
    for nodes, density, step in _LEVELS[1:]:
        if rows.size == 0:
            break
        values = f(root[rows, None] * nodes)
        total[rows] += values @ density
        size[rows] += np.abs(values) @ density
        finer = total[rows] * step
        agree = (np.abs(finer - estimate[rows]) <= _AGREE * size[rows] * step) & (coarse * root[rows] <= _X_STEP)
        estimate[rows] = finer
        rows, coarse = rows[~agree], step
    return estimate


def _gauss2(f: Callable[[np.ndarray], np.ndarray], q: float, c: float) -> float:
    """E f(u_a) f(u_b) for centred jointly Gaussian u_a, u_b of variance q and correlation c."""
    s = math.sqrt(q)
    fa = f(s * _Z2) * _W2
    fb = f(s * (c * _Z2[:, None] + math.sqrt(max(1.0 - c * c, 0.0)) * _Z2[None, :]))
    return float(fa @ fb @ _W2)


def normal_pdf(x):
    return np.exp(-0.5 * x * x) / _SQRT_2PI


_GL_T, _GL_W = np.polynomial.legendre.leggauss(16)
_PANELS = 8  # Gauss-Legendre panels per smooth piece of [-12, 12]
_PANEL_T = ((np.arange(_PANELS)[:, None] + (_GL_T + 1) / 2) / _PANELS).ravel()  # nodes on [0, 1]
_PANEL_W = np.tile(_GL_W / (2 * _PANELS), _PANELS)  # their weights (sum 1)


def _pieces(breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights (times the N(0, 1) density) over [-12, 12]
    split at the rows of ``breaks`` (n, k) (each row sorted, inside [-12, 12]): (n, (k + 1) m)."""
    edges = np.concatenate([np.full((len(breaks), 1), -12.0), breaks, np.full((len(breaks), 1), 12.0)], axis=1)
    lo, width = edges[:, :-1, None], np.diff(edges, axis=1)[:, :, None]
    nodes = (lo + width * _PANEL_T).reshape(len(breaks), -1)
    weights = (width * _PANEL_W).reshape(len(breaks), -1) * normal_pdf(nodes)
    return nodes, weights


def _z_breaks(kinks: tuple[float, ...], root: np.ndarray, centre=0.0, spread=1.0) -> np.ndarray:
    """Where z crosses each kink x_k of phi at argument root (centre + spread z): (n, k), sorted."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(kinks)[None, :] / root[:, None] - np.asarray(centre).reshape(-1, 1)) / spread
    return np.sort(np.clip(np.nan_to_num(z, nan=0.0), -12.0, 12.0), axis=1)


def _gauss_kinked(f: Callable[[np.ndarray], np.ndarray], q, kinks: tuple[float, ...]) -> np.ndarray:
    """E_z f(sqrt(q) z) for f smooth between the points ``kinks`` (in its argument), elementwise
    over q: Gauss-Legendre panels on each piece between the kinks, so a jump in f (relu's phi'^2)
    costs no accuracy; the trapezoid rule's error over a jump falls only as its step."""
    root = np.sqrt(np.asarray(q, dtype=float)).reshape(-1)
    nodes, weights = _pieces(_z_breaks(kinks, root))
    out = np.sum(f(root[:, None] * nodes) * weights, axis=1)
    zero = root == 0
    out[zero] = f(np.zeros(int(zero.sum())))
    return out.reshape(np.shape(q))


def _gauss2_kinked(f: Callable[[np.ndarray], np.ndarray], q: float, c: float, kinks: tuple[float, ...]) -> float:
    """E f(u_a) f(u_b) as _gauss2, for f smooth between ``kinks``: the outer integral over
    z_a split where u_a = sqrt(q) z_a crosses a kink, the inner one over z_b (u_b = sqrt(q)(c z_a
    + sqrt(1 - c^2) z_b)) where u_b does, for each outer node."""
    root, spread = math.sqrt(q), math.sqrt(max(1.0 - c * c, 0.0))
    if spread < 1e-12:  # u_b = c u_a
        mirrored = tuple(k / c for k in kinks) if c else ()
        return float(_gauss_kinked(lambda x: f(x) * f(c * x), q, tuple(kinks) + mirrored))
    za, wa = _pieces(_z_breaks(kinks, np.array([root])))
    za, wa = za[0], wa[0]
    zb, wb = _pieces(_z_breaks(kinks, np.full(len(za), root), c * za, spread))
    inner = np.sum(f(root * (c * za[:, None] + spread * zb)) * wb, axis=1)
    return float(np.sum(f(root * za) * wa * inner))


class Quadrature:
    """phi with its derivative dphi (NumPy-vectorised); every expectation by quadrature.

    ``kinks``: the arguments where phi or dphi is not smooth (a shifted relu's -shift / scale):
    there the integrals are split (Gauss-Legendre on each piece), and dV/dq gains the jump of phi'
    at each kink (phi phi'' holds a delta there). Without kinks phi must be smooth."""

    gain = None

    def __init__(self, phi: Callable, dphi: Callable, kinks: tuple[float, ...] = ()):
        self.phi, self.dphi, self.kinks = phi, dphi, tuple(float(k) for k in kinks)

    def _gauss(self, f: Callable, q):
        return _gauss_kinked(f, q, self.kinks) if self.kinks else _gauss(f, q)

    def second_moment(self, q):
        return self._gauss(lambda x: self.phi(x) ** 2, q)

    def grad_moment(self, q):
        return self._gauss(lambda x: self.dphi(x) ** 2, q)

    def mean(self, q):
        return self._gauss(self.phi, q)

    def length_slope(self, q):
        h = 1e-4  # phi'' by central differences of phi': ~1e-9 error, only used for xi_q
        slope = self._gauss(lambda x: self.dphi(x) ** 2
                            + self.phi(x) * (self.dphi(x + h) - self.dphi(x - h)) / (2 * h), q)
        root = np.sqrt(np.asarray(q, dtype=float))
        for k in self.kinks:  # phi phi'' at a jump J of phi': phi(k) J times the density of sqrt(q) z at k
            jump = float(self.dphi(np.array(k + 1e-9)) - self.dphi(np.array(k - 1e-9)))
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = slope + np.where(root > 0, float(self.phi(np.array(k))) * jump * normal_pdf(k / root) / root,
                                         0.0)
        return slope

    def kernel(self, q, c):
        return _gauss2_kinked(self.phi, q, c, self.kinks) if self.kinks else _gauss2(self.phi, q, c)

    def grad_kernel(self, q, c):
        return _gauss2_kinked(self.dphi, q, c, self.kinks) if self.kinks else _gauss2(self.dphi, q, c)


class PiecewiseLinear:
    """phi(x) = x for x > 0 and s x for x < 0 (linear s=1, relu s=0, leaky_relu): closed forms.

    Written as a relu(x) + s x with a = 1 - s; relu's two-input kernels are the arc-cosine ones.
    """

    def __init__(self, negative_slope: float):
        self.s = float(negative_slope)
        self.a = 1.0 - self.s
        self.gain = 0.5 * (1.0 + self.s**2)
        self.kinks = (0.0,) if self.s != 1.0 else ()

    def phi(self, x):
        return np.where(x > 0, x, self.s * x)

    def dphi(self, x):
        return np.where(x > 0, 1.0, self.s)

    def second_moment(self, q):
        return self.gain * np.asarray(q, dtype=float)

    def grad_moment(self, q):
        return np.full(np.shape(q), self.gain)

    def mean(self, q):
        return self.a * np.sqrt(np.asarray(q, dtype=float) / (2 * math.pi))

    def length_slope(self, q):
        return self.grad_moment(q)

    def kernel(self, q, c):
        relu = q / (2 * math.pi) * (math.sqrt(max(1.0 - c * c, 0.0)) + (math.pi - math.acos(c)) * c)
        return self.a**2 * relu + (self.a * self.s + self.s**2) * q * c

    def grad_kernel(self, q, c):
        return self.a**2 * (math.pi - math.acos(c)) / (2 * math.pi) + self.a * self.s + self.s**2


class ELU(Quadrature):
    """scale * (x if x > 0 else alpha (e^x - 1)): elu and selu, closed forms in one input.

    Uses G(k) = E[e^{k sqrt(q) z}; z < 0] = e^{k^2 q/2} Phi(-k sqrt(q)), computed in log space.
    Two-input kernels by quadrature split at the kink x = 0 (phi' jumps there unless
    alpha = 1: on a trapezoid grid selu's E[phi'(u_a) phi'(u_b)] was 1% off and its xi_c 23%).
    """

    def __init__(self, alpha: float, scale: float = 1.0):
        self.alpha, self.scale = float(alpha), float(scale)
        super().__init__(
            lambda x: scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
            lambda x: scale * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0))), kinks=(0.0,))

    @staticmethod
    def _g(k: float, q):
        q = np.asarray(q, dtype=float)
        return np.exp(0.5 * k * k * q + special.log_ndtr(-k * np.sqrt(q)))

    def second_moment(self, q):
        a2 = self.alpha**2
        return self.scale**2 * (0.5 * np.asarray(q, float)
                                + a2 * (self._g(2, q) - 2 * self._g(1, q) + 0.5))

    def grad_moment(self, q):
        return self.scale**2 * (0.5 + self.alpha**2 * self._g(2, q))

    def mean(self, q):
        return self.scale * (np.sqrt(np.asarray(q, float) / (2 * math.pi))
                             + self.alpha * (self._g(1, q) - 0.5))

    def length_slope(self, q):
        return self.scale**2 * (0.5 + self.alpha**2 * (2 * self._g(2, q) - self._g(1, q)))


Expectations = (Quadrature, PiecewiseLinear)  # every class above (ELU is a Quadrature)
