"""Gaussian expectations of a nonlinearity phi: what the mean-field theory reads of an activation.

Each object answers, for pre-activation lengths q (arrays), expectations over z ~ N(0, 1) at
argument sqrt(q) z: ``second_moment`` E[phi^2] (V), ``grad_moment`` E[phi'^2], ``mean`` E[phi],
``length_slope`` dV/dq (= E[phi'^2 + phi phi''] by Stein's lemma), and the two-input
``kernel`` / ``grad_kernel`` E[phi(u_a) phi(u_b)] / E[phi'(u_a) phi'(u_b)] for centred jointly
Gaussian u_a, u_b of variance q and correlation c. ``gain`` is g with V(q) = g q exactly for
positively homogeneous activations, else None.

Closed forms for piecewise-linear phi (linear, relu, leaky_relu) and for elu/selu in one input
(kinks spoil quadrature); otherwise the trapezoid rule on z in [-12, 12]: it converges
exponentially for smooth integrands and stays below 1e-8 relative error up to q ~ 100, where
Gauss-Hermite with 100 nodes is only that good for q <= 1. Derivations: docs/theory.md.
Pure NumPy/SciPy.
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


_Z1, _W1 = _trapezoid_rule(1601)  # one-input integrals
_Z2, _W2 = _trapezoid_rule(601)  # two-input integrals (tensor grid)


_ROWS = 16  # q values per block: a block's (16, 1601) temporaries stay in the CPU's cache


def _gauss(f: Callable[[np.ndarray], np.ndarray], q) -> np.ndarray:
    """E_z f(sqrt(q) z), z ~ N(0, 1), elementwise over the array q.

    Evaluated in blocks of ``_ROWS`` values of q: the mean-field predictions pass one q per layer
    and probe example (e.g. 50 x 1000), and one (q.size, 1601) pass through NumPy's temporaries
    ran 4-13x slower than blocks that fit in cache (same values to 1e-15)."""
    root = np.sqrt(np.asarray(q, dtype=float))
    flat = root.reshape(-1)
    out = np.empty_like(flat)
    for start in range(0, flat.size, _ROWS):
        out[start:start + _ROWS] = f(flat[start:start + _ROWS, None] * _Z1) @ _W1
    return out.reshape(root.shape)


def _gauss2(f: Callable[[np.ndarray], np.ndarray], q: float, c: float) -> float:
    """E f(u_a) f(u_b) for centred jointly Gaussian u_a, u_b of variance q and correlation c."""
    s = math.sqrt(q)
    fa = f(s * _Z2) * _W2
    fb = f(s * (c * _Z2[:, None] + math.sqrt(max(1.0 - c * c, 0.0)) * _Z2[None, :]))
    return float(fa @ fb @ _W2)


def normal_pdf(x):
    return np.exp(-0.5 * x * x) / _SQRT_2PI


class Quadrature:
    """A smooth phi with its derivative dphi (NumPy-vectorised); every expectation by quadrature."""

    gain = None

    def __init__(self, phi: Callable, dphi: Callable):
        self.phi, self.dphi = phi, dphi

    def second_moment(self, q):
        return _gauss(lambda x: self.phi(x) ** 2, q)

    def grad_moment(self, q):
        return _gauss(lambda x: self.dphi(x) ** 2, q)

    def mean(self, q):
        return _gauss(self.phi, q)

    def length_slope(self, q):
        h = 1e-4  # phi'' by central differences of phi': ~1e-9 error, only used for xi_q
        return _gauss(lambda x: self.dphi(x) ** 2
                      + self.phi(x) * (self.dphi(x + h) - self.dphi(x - h)) / (2 * h), q)

    def kernel(self, q, c):
        return _gauss2(self.phi, q, c)

    def grad_kernel(self, q, c):
        return _gauss2(self.dphi, q, c)


class PiecewiseLinear:
    """phi(x) = x for x > 0 and s x for x < 0 (linear s=1, relu s=0, leaky_relu): closed forms.

    Written as a relu(x) + s x with a = 1 - s; relu's two-input kernels are the arc-cosine ones.
    """

    def __init__(self, negative_slope: float):
        self.s = float(negative_slope)
        self.a = 1.0 - self.s
        self.gain = 0.5 * (1.0 + self.s**2)

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
    Two-input kernels fall back to quadrature (accurate to ~1e-4 because of the kink).
    """

    def __init__(self, alpha: float, scale: float = 1.0):
        self.alpha, self.scale = float(alpha), float(scale)
        super().__init__(
            lambda x: scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))),
            lambda x: scale * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0))))

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
