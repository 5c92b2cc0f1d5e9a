"""The init group's schemas: which layers an init fills and its own parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from omegaconf import MISSING

from initlab import choices
from initlab.config.enums import ApplyTo, FanMode
from initlab.config.ranges import INT_MAX, Checked, _require, _require_choice, number


@dataclass
class InitConfig(Checked):
    """Fields every init has: which layers it fills (``apply_to``) and whether Embedding weights
    count (``embedding``; off: embeddings keep torch's N(0, 1))."""

    PREFIX: ClassVar[str] = "init."
    name: str = MISSING
    apply_to: ApplyTo = ApplyTo.all
    embedding: bool = False

    def check(self) -> None:
        _require_choice("init", self.name, choices.INITS)


@dataclass
class VarianceScalingConfig(InitConfig):
    """He (Kaiming) inits: Var(W) = factor / fan, fan chosen by ``mode``."""

    factor: float = number(gt=0)
    mode: FanMode = MISSING


@dataclass
class GainConfig(InitConfig):
    """Xavier (Glorot) and orthogonal inits, scaled by ``gain``."""

    gain: float = number(gt=0)


@dataclass
class NormalConfig(InitConfig):
    std: float = number(gt=0)


def trunc_normal_acceptance(mean: float, std: float, a: float, b: float) -> float:
    """Probability that one draw of torch.nn.init.trunc_normal_'s sampler is accepted.

    torch (2.x) redraws rejected entries: from N(mean, std^2) when the mass p of [a, b] is above
    0.3 (acceptance p), else uniformly on [a, b] against the normal density's peak on [a, b]
    (acceptance p * sqrt(2 pi) std / ((b - a) * peak)). A tiny acceptance means a sampler that
    runs practically forever.
    """
    cdf = lambda x: 0.5 * (1.0 + math.erf((x - mean) / std / math.sqrt(2.0)))  # noqa: E731
    p = cdf(b) - cdf(a)
    if p > 0.3:
        return p
    near = max(a - mean, mean - b, 0.0) / std  # distances from the mean, in std
    far = max(abs(a - mean), abs(b - mean)) / std
    lowest = math.exp(-0.5 * (far - near) * (far + near))  # the density's min/max ratio on [a, b]
    mode = max(a, min(mean, b))
    peak = math.exp(-0.5 * ((mode - mean) / std) ** 2)
    exact = p * math.sqrt(2 * math.pi) / ((b - a) / std * peak) if peak > 0 else 0.0
    return max(exact, lowest)  # the bound holds where p underflows (std >> b - a)


@dataclass
class LSUVConfig(InitConfig):
    """LSUV (Mishkin & Matas 2016): orthonormal weights, then each layer in turn rescaled until its
    output's variance on the probe batch is within ``tol`` of ``target_var`` (the paper's 1), at
    most ``max_iters`` rescalings per layer (the paper's T_max); initlab.lsuv."""

    target_var: float = number(gt=0)
    tol: float = number(gt=0)
    max_iters: int = number(ge=1, le=INT_MAX, integer=True)

    def check(self) -> None:
        super().check()
        _require(self.apply_to == ApplyTo.all, "init.apply_to=head does not apply to init=lsuv, which rescales "
                                               "every layer in turn; valid: all")
        _require(self.tol < self.target_var, f"init.tol must be < init.target_var ({self.target_var}), got {self.tol}")


TRUNC_NORMAL_MIN_ACCEPTANCE = 0.1  # at 0.02 torch takes 100 s for one 1000 x 1000 weight (measured)


@dataclass
class TruncNormalConfig(InitConfig):
    """torch.nn.init.trunc_normal_: ``a`` and ``b`` are absolute cut-offs, not multiples of std."""

    mean: float = number()
    std: float = number(gt=0)
    a: float = number()
    b: float = number()

    def check(self) -> None:
        super().check()
        _require(self.a < self.b, f"init.a must be < init.b, got a={self.a}, b={self.b}")
        # torch warns (and its inverse-CDF sampler of older versions draws wrongly) beyond 2 std
        lo, hi = self.a - 2 * self.std, self.b + 2 * self.std
        _require(lo <= self.mean <= hi, f"init.mean must be within 2 init.std of [init.a, init.b], i.e. "
                                        f"in [{lo:g}, {hi:g}], got {self.mean}")
        acceptance = trunc_normal_acceptance(self.mean, self.std, self.a, self.b)
        _require(acceptance >= TRUNC_NORMAL_MIN_ACCEPTANCE,
                 f"init.mean, init.std, init.a, init.b = {self.mean}, {self.std}, {self.a}, {self.b}: [a, b] "
                 f"holds too little of N(mean, std^2) for torch.nn.init.trunc_normal_ to sample (acceptance "
                 f"{acceptance:.1e} < {TRUNC_NORMAL_MIN_ACCEPTANCE:g}); move the mean into [a, b] or narrow it")
