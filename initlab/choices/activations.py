"""The activation choices: one object each with everything the project knows about it.

The registry ``ACTIVATIONS`` is in plot order (the reference study's). Torch is imported only when
a module is built, so the analysis side (which must not load torch) reads names, colours and
the theory's expectations from here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from scipy import special

from initlab.choices.base import field, rgb
from initlab.choices.gaussian import ELU, PiecewiseLinear, Quadrature, normal_pdf

SELU_ALPHA = 1.6732632423543772848170429916717  # Klambauer et al. 2017, as torch.nn.SELU
SELU_SCALE = 1.0507009873554804934193349852946


@dataclass(frozen=True)
class Activation:
    """One activation choice (``conf/activation/<name>.yaml`` holds its parameters).

    module: config -> a fresh torch module (one per site; imports torch when called).
    expectations: config, mapping or bare name -> its Gaussian expectations for the mean-field
        theory (initlab.choices.gaussian), missing parameters at their YAML defaults.
    saturated: post-activation values (torch tensor or NumPy array) -> boolean mask of units in
        the flat part of a bounded activation; None for activations that never saturate.
    color: RGB in [0, 1], the same in every figure.
    """

    name: str
    module: Callable[[Any], Any]
    expectations: Callable[[Any], Any]
    saturated: Optional[Callable[[Any], Any]]
    color: tuple[float, float, float]


def _nn():
    from torch import nn  # here, not at the top: see the module docstring

    return nn


def _tanh_saturated(post):
    return abs(post) > 0.99


def _sigmoid_saturated(post):
    return (post < 0.01) | (post > 0.99)


def _gelu(cfg) -> Quadrature:
    """phi = x Phi(x), or torch's tanh approximation with ``approximate: tanh``."""
    if field(cfg, "approximate", "none") == "tanh":
        k = math.sqrt(2 / math.pi)

        def phi(x):
            return 0.5 * x * (1.0 + np.tanh(k * (x + 0.044715 * x**3)))

        def dphi(x):
            t = np.tanh(k * (x + 0.044715 * x**3))
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * x**2)

        return Quadrature(phi, dphi)
    return Quadrature(lambda x: x * special.ndtr(x), lambda x: special.ndtr(x) + x * normal_pdf(x))


def _registry(*choices: Activation) -> dict[str, Activation]:
    return {c.name: c for c in choices}


ACTIVATIONS: dict[str, Activation] = _registry(  # Dark2, then black
    Activation("relu", lambda cfg: _nn().ReLU(), lambda cfg: PiecewiseLinear(0.0), None, rgb("#1b9e77")),
    Activation("tanh", lambda cfg: _nn().Tanh(),
               lambda cfg: Quadrature(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
               _tanh_saturated, rgb("#d95f02")),
    Activation("sigmoid", lambda cfg: _nn().Sigmoid(),
               lambda cfg: Quadrature(special.expit, lambda x: special.expit(x) * (1.0 - special.expit(x))),
               _sigmoid_saturated, rgb("#7570b3")),
    Activation("gelu", lambda cfg: _nn().GELU(approximate=cfg.approximate), _gelu, None, rgb("#e7298a")),
    Activation("linear", lambda cfg: _nn().Identity(), lambda cfg: PiecewiseLinear(1.0), None, rgb("#66a61e")),
    Activation("leaky_relu", lambda cfg: _nn().LeakyReLU(cfg.negative_slope),
               lambda cfg: PiecewiseLinear(field(cfg, "negative_slope", 0.01)), None, rgb("#e6ab02")),
    Activation("elu", lambda cfg: _nn().ELU(cfg.alpha), lambda cfg: ELU(field(cfg, "alpha", 1.0)), None,
               rgb("#a6761d")),
    Activation("selu", lambda cfg: _nn().SELU(), lambda cfg: ELU(SELU_ALPHA, SELU_SCALE), None, rgb("#666666")),
    Activation("silu", lambda cfg: _nn().SiLU(),
               lambda cfg: Quadrature(lambda x: x * special.expit(x),
                                      lambda x: special.expit(x) * (1.0 + x * (1.0 - special.expit(x)))),
               None, rgb("#000000")),
)


def build_activation(cfg) -> Any:
    """A fresh torch module for the activation config ``cfg`` (call once per site).

    Raises KeyError for a name with no registry entry (config validation rejects those first).
    """
    return ACTIVATIONS[cfg.name].module(cfg)
