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
Past sqrt(q) = 16.7 times the scale on which phi bends (1; 1 / a for kernel shaping's phi(a x + s))
no trapezoid step here resolves phi (DKS tanh, a = 153: E[phi'^2] 89.3 for 100, two rules agreeing):
Gauss-Legendre panels graded about the bend instead. Derivations: docs/theory.md. Pure NumPy/SciPy.
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
_AGREE = 1e-10  # successive rules agreeing to this fraction of E|f| end the halving
_X_STEP = 0.5  # ... once the coarser one samples phi at most this far apart (in units of phi's scale)
_Z2, _W2 = _trapezoid_rule(601)  # two-input integrals (tensor grid)
_WIDE = _X_STEP / _LEVELS[-2][2]  # spread sqrt(q) / scale beyond which no trapezoid rule here resolves phi: 16.7
_WIDE2 = 0.5 * _X_STEP / (_Z2[1] - _Z2[0])  # ... the two-input grid (step 0.04, sampling phi 0.25 apart): 6.25


_ROWS = 128  # q values per block: a block's temporaries stay in the CPU's cache
_GRADES = np.concatenate([-np.geomspace(64.0, 1 / 16, 11), [0.0], np.geomspace(1 / 16, 64.0, 11)])
_Z_GRID = np.linspace(-12.0, 12.0, 17)[1:-1]  # the density's own panel edges, 1.5 apart


def _points(scale: float, centre: float, kinks: tuple[float, ...]) -> np.ndarray:
    """Where the graded rule splits phi's argument: centre + scale * _GRADES (0, +-1/16 ... +-64,
    twice as far apart at each step out from the centre) and the kinks, sorted."""
    return np.unique(np.concatenate([centre + scale * _GRADES, np.asarray(kinks, dtype=float)]))


def _gauss(f: Callable[[np.ndarray], np.ndarray], q, scale: float = 1.0, centre: float = 0.0,
           kinks: tuple[float, ...] = ()) -> np.ndarray:
    """E_z f(sqrt(q) z), z ~ N(0, 1), elementwise over the array q, for f that bends only within a
    few ``scale`` of ``centre`` (in f's argument; a steeper f is not resolved) and, with
    ``kinks``, is smooth between them.

    Per length: the halving trapezoid rule (a smooth f) or Gauss-Legendre panels between the kinks
    where sqrt(q) <= _WIDE scale (16.7: the trapezoid's step then resolves f's bends); beyond that
    f's bends are narrower than any step of those rules (a DKS tanh's phi', input scale 153: chi_1
    89 for 100, no warning), and ``_graded`` panels follow them. Evaluated in blocks of ``_ROWS``
    values of q: the mean-field predictions pass one q per layer and probe example (e.g. 50 x 1000),
    and one (q.size, 1601) pass through NumPy's temporaries ran 4-13x slower than blocks that fit in
    cache (same values to 1e-15)."""
    root = np.sqrt(np.asarray(q, dtype=float))
    flat = root.reshape(-1)
    out = np.empty_like(flat)
    for start in range(0, flat.size, _ROWS):
        block = flat[start:start + _ROWS]
        wide = block > _WIDE * scale
        if not (kinks or wide.any()):
            out[start:start + _ROWS] = _halving_trapezoid(f, block, scale)
            continue
        part, rest = np.empty_like(block), block[~wide]
        if wide.any():
            part[wide] = _split(f, block[wide], _graded(_points(scale, centre, kinks), block[wide]))
        if rest.size:
            part[~wide] = (_split(f, rest, _kinked(np.asarray(kinks), rest)) if kinks
                           else _halving_trapezoid(f, rest, scale))
        out[start:start + _ROWS] = part
    return out.reshape(root.shape)


def _halving_trapezoid(f: Callable[[np.ndarray], np.ndarray], root: np.ndarray, scale: float) -> np.ndarray:
    """E_z f(root z) per entry of the 1-D array ``root`` (each <= _WIDE scale): the trapezoid rule,
    its step halved until two successive rules differ by at most ``_AGREE`` E|f| (then the finer
    one's error is far smaller: the error of a smooth integrand squares with each halving, that of a
    kinked one falls 4x) or the finest rule (1601 nodes) is reached. Agreement counts only once the
    coarser rule's step in phi's argument, step * root, is at most ``_X_STEP`` scale: rules too
    coarse to see phi's bend near 0 agree on a wrong value (gelu at q = 600: both off by 3e-5). A
    NaN length gives NaN."""
    estimate = np.empty_like(root)
    zero = root == 0  # E f(0 z) = f(0) exactly, not the rule's weights summing to 1 - 1e-16
    if zero.any():
        estimate[zero] = f(np.zeros((int(zero.sum()), 1)))[:, 0]
    rows = np.flatnonzero(~zero)
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
        agree = ((np.abs(finer - estimate[rows]) <= _AGREE * size[rows] * step)
                 & (coarse * root[rows] <= _X_STEP * scale))
        estimate[rows] = finer
        rows, coarse = rows[~agree], step
    return estimate


def _gauss2(f: Callable[[np.ndarray], np.ndarray], q: float, c: float, scale: float = 1.0, centre: float = 0.0,
            kinks: tuple[float, ...] = ()) -> float:
    """E f(u_a) f(u_b) for centred jointly Gaussian u_a, u_b of variance q and correlation c, f as
    for ``_gauss``: the 601 x 601 trapezoid grid, Gauss-Legendre panels between the kinks, or, where
    sqrt(q) > _WIDE2 scale (the grid would sample f more than 0.25 scale apart), ``_graded`` panels."""
    if math.sqrt(q) > _WIDE2 * scale:
        return _gauss2_split(f, q, c, _points(scale, centre, kinks), _graded)
    if kinks:
        return _gauss2_split(f, q, c, np.asarray(kinks), _kinked)
    s = math.sqrt(q)
    fa = f(s * _Z2) * _W2
    fb = f(s * (c * _Z2[:, None] + math.sqrt(max(1.0 - c * c, 0.0)) * _Z2[None, :]))
    return float(fa @ fb @ _W2)


def normal_pdf(x):
    return np.exp(-0.5 * x * x) / _SQRT_2PI


_GL_T, _GL_W = np.polynomial.legendre.leggauss(16)
_PANELS = 8  # Gauss-Legendre panels per smooth piece of [-12, 12] between kinks


def _panel_rule(panels: int) -> tuple[np.ndarray, np.ndarray]:
    """``panels`` 16-node Gauss-Legendre panels on [0, 1]: nodes and weights (sum 1)."""
    return ((np.arange(panels)[:, None] + (_GL_T + 1) / 2) / panels).ravel(), np.tile(_GL_W / (2 * panels), panels)


_PANEL_RULES = {panels: _panel_rule(panels) for panels in (1, _PANELS)}


def _pieces(breaks: np.ndarray, panels: int = _PANELS) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights (times the N(0, 1) density) over [-12, 12]
    split at the rows of ``breaks`` (n, k) (each row sorted, inside [-12, 12]), ``panels`` panels
    (1 or _PANELS) per piece: (n, (k + 1) 16 panels)."""
    t, w = _PANEL_RULES[panels]
    edges = np.concatenate([np.full((len(breaks), 1), -12.0), breaks, np.full((len(breaks), 1), 12.0)], axis=1)
    lo, width = edges[:, :-1, None], np.diff(edges, axis=1)[:, :, None]
    nodes = (lo + width * t).reshape(len(breaks), -1)
    weights = (width * w).reshape(len(breaks), -1) * normal_pdf(nodes)
    return nodes, weights


def _z_breaks(kinks: np.ndarray, root: np.ndarray, centre=0.0, spread=1.0) -> np.ndarray:
    """Where z crosses each point x_k of phi's argument root (centre + spread z): (n, k), sorted."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(kinks)[None, :] / root[:, None] - np.asarray(centre).reshape(-1, 1)) / spread
    return np.sort(np.clip(np.nan_to_num(z, nan=0.0), -12.0, 12.0), axis=1)


def _kinked(kinks: np.ndarray, root: np.ndarray, centre=0.0, spread=1.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for f(root (centre + spread z)) (n = root.size rows) with f smooth between
    ``kinks``: _PANELS Gauss-Legendre panels on each piece between them, so a jump in f (relu's
    phi'^2) costs no accuracy; the trapezoid rule's error over a jump falls only as its step."""
    return _pieces(_z_breaks(kinks, root, centre, spread))


def _graded(points: np.ndarray, root: np.ndarray, centre=0.0, spread=1.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for f(root (centre + spread z)) (n = root.size rows) where f's bends are far
    narrower than the density: one 16-node Gauss-Legendre panel between successive breaks, at the z
    where the argument crosses each of ``points`` (``_points``: panels a sixteenth of f's scale wide
    at its centre, doubling outwards to 64 scales, past which the project's activations are linear
    to 1e-16) and every 1.5 in z (the density's own scale): (n, 16 (points.size + 16))."""
    breaks = np.concatenate([_z_breaks(points, root, centre, spread),
                             np.broadcast_to(_Z_GRID, (root.size, _Z_GRID.size))], axis=1)
    return _pieces(np.sort(breaks, axis=1), panels=1)


def _split(f: Callable[[np.ndarray], np.ndarray], root: np.ndarray, rule: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """E_z f(root z) per entry of ``root`` from ``rule``'s (nodes, weights) (``_kinked`` or
    ``_graded``); f(0) exactly at root = 0."""
    nodes, weights = rule
    out = np.sum(f(root[:, None] * nodes) * weights, axis=1)
    zero = root == 0
    out[zero] = f(np.zeros(int(zero.sum())))
    return out


def _gauss2_split(f: Callable[[np.ndarray], np.ndarray], q: float, c: float, points: np.ndarray, rule) -> float:
    """E f(u_a) f(u_b) as _gauss2 with ``rule`` (``_kinked`` or ``_graded``) at ``points``: the
    outer integral over z_a split where u_a = sqrt(q) z_a crosses them, the inner one over z_b
    (u_b = sqrt(q)(c z_a + sqrt(1 - c^2) z_b)) where u_b does, for each outer node."""
    root, spread = math.sqrt(q), math.sqrt(max(1.0 - c * c, 0.0))
    if spread < 1e-12:  # u_b = c u_a
        both = np.concatenate([points, points / c if c else []])
        return float(_split(lambda x: f(x) * f(c * x), np.array([root]), rule(both, np.array([root])))[0])
    za, wa = rule(points, np.array([root]))
    za, wa = za[0], wa[0]
    zb, wb = rule(points, np.full(len(za), root), c * za, spread)
    inner = np.sum(f(root * (c * za[:, None] + spread * zb)) * wb, axis=1)
    return float(np.sum(f(root * za) * wa * inner))


class Quadrature:
    """phi with its derivative dphi (NumPy-vectorised); every expectation by quadrature.

    ``kinks``: the arguments where phi or dphi is not smooth (a shifted relu's -shift / scale):
    there the integrals are split (Gauss-Legendre on each piece), and dV/dq gains the jump of phi'
    at each kink (phi phi'' holds a delta there). Without kinks phi must be smooth. ``scale`` and
    ``centre`` (kept as bend_scale, bend_centre): phi bends only within a few ``scale`` of
    ``centre`` (1 and 0 for the project's activations; 1 / a and -s / a for phi(a x + s) of kernel
    shaping), which sets the rule each length q takes (``_gauss``)."""

    gain = None

    def __init__(self, phi: Callable, dphi: Callable, kinks: tuple[float, ...] = (), scale: float = 1.0,
                 centre: float = 0.0):
        self.phi, self.dphi, self.kinks = phi, dphi, tuple(float(k) for k in kinks)
        self.bend_scale, self.bend_centre = float(scale), float(centre)

    def _gauss(self, f: Callable, q):
        return _gauss(f, q, self.bend_scale, self.bend_centre, self.kinks)

    def _gauss2(self, f: Callable, q, c):
        return _gauss2(f, q, c, self.bend_scale, self.bend_centre, self.kinks)

    def second_moment(self, q):
        return self._gauss(lambda x: self.phi(x) ** 2, q)

    def grad_moment(self, q):
        return self._gauss(lambda x: self.dphi(x) ** 2, q)

    def mean(self, q):
        return self._gauss(self.phi, q)

    def length_slope(self, q):
        h = 1e-4 * self.bend_scale  # phi'' by central differences of phi': ~1e-9 error, only used for xi_q
        slope = self._gauss(lambda x: self.dphi(x) ** 2
                            + self.phi(x) * (self.dphi(x + h) - self.dphi(x - h)) / (2 * h), q)
        root = np.sqrt(np.asarray(q, dtype=float))
        for k in self.kinks:  # phi phi'' at a jump J of phi': phi(k) J times the density of sqrt(q) z at k
            eps = 1e-9 * self.bend_scale
            jump = float(self.dphi(np.array(k + eps)) - self.dphi(np.array(k - eps)))
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = slope + np.where(root > 0, float(self.phi(np.array(k))) * jump * normal_pdf(k / root) / root,
                                         0.0)
        return slope

    def kernel(self, q, c):
        return self._gauss2(self.phi, q, c)

    def grad_kernel(self, q, c):
        return self._gauss2(self.dphi, q, c)


class PiecewiseLinear:
    """phi(x) = x for x > 0 and s x for x < 0 (linear s=1, relu s=0, leaky_relu): closed forms.

    Written as a relu(x) + s x with a = 1 - s; relu's two-input kernels are the arc-cosine ones.
    """

    bend_scale, bend_centre = 1.0, 0.0  # as Quadrature's: where phi bends (only at its kink)

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
