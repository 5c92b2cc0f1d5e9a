"""The weight-init choices: one object each with its fill and its sigma_w^2.

The registry ``INITS`` is in plot order (the reference study's, related inits side by side).
Every fill draws from exactly the distribution the matching torch.nn.init function draws from
(tests compare them tensor for tensor under the same seed); torch is imported only when a fill
runs, so the theory and the analysis read sigma_w^2, colours and dashes without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from scipy import stats

from initlab.choices.base import field, rgb

Dashes = Union[str, tuple]  # seaborn's line dashes: "" solid, else on/off lengths in points


@dataclass(frozen=True)
class Init:
    """One init choice (``conf/init/<name>.yaml`` holds its parameters).

    fill(weight, cfg, layer=None): fills ``weight`` in place and returns it; ``layer`` is the
        module owning it (only torch_default depends on it; None reads as a Linear/Conv).
    sigma_w2(cfg, fan_in, fan_out): fan_in * E[W_ij^2] of a Linear(fan_in -> fan_out) weight, the
        mean-field theory's sigma_w^2; cfg a mapping or attribute object, missing fields at their
        YAML defaults.
    color: RGB in [0, 1]; dashes: the line style, shared within a family of related inits.
    rescale(model, cfg, x): for a data-dependent init, what runs on the filled model with a data
        batch ``x`` (the fill is then its pre-init); returns its report (a JSON-ready dict).
    theory_reason: why the mean-field theory has no sigma_w^2 for this init (None: it has one).
    """

    name: str
    fill: Callable[..., Any]
    sigma_w2: Callable[[Any, int, int], float]
    color: tuple[float, float, float]
    dashes: Dashes
    rescale: Optional[Callable[[Any, Any, Any], dict]] = None
    theory_reason: Optional[str] = None


def _init():
    import torch.nn.init  # here, not at the top: see the module docstring

    return torch.nn.init


def fan(weight, mode: str) -> int:
    """fan_in or fan_out of a weight by torch's rule (a conv kernel's fan_in is in_channels * area)."""
    fan_in, fan_out = _init()._calculate_fan_in_and_fan_out(weight)
    return fan_in if mode == "fan_in" else fan_out


def _variance_normal(weight, factor: float, mode: str):
    """N(0, factor/fan): kaiming_normal_ with gain^2 = factor (factor 2 is He et al. for ReLU)."""
    return _init().normal_(weight, 0.0, math.sqrt(factor / fan(weight, mode)))


def _variance_uniform(weight, factor: float, mode: str):
    """U(-b, b) with b = sqrt(3 factor/fan), so Var = factor/fan: kaiming_uniform_ with gain^2 = factor."""
    bound = math.sqrt(3.0 * factor / fan(weight, mode))
    return _init().uniform_(weight, -bound, bound)


def _torch_default(weight, cfg, layer=None):
    """What torch draws for ``layer``'s weight when it builds the layer: U(+-1/sqrt(fan_in)) for
    Linear and Conv (kaiming_uniform_ with a=sqrt(5), gain^2 = 1/3), N(0, 1) for Embedding,
    xavier_uniform_ for MultiheadAttention's in_proj_weight."""
    from torch import nn

    if isinstance(layer, nn.Embedding):
        return nn.init.normal_(weight)
    if isinstance(layer, nn.MultiheadAttention):
        return nn.init.xavier_uniform_(weight)
    return nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


def _he_sigma_w2(cfg, fan_in: int, fan_out: int) -> float:
    fan_ = fan_out if field(cfg, "mode", "fan_in") == "fan_out" else fan_in
    return fan_in * field(cfg, "factor", 2.0) / fan_


def _xavier_sigma_w2(cfg, fan_in: int, fan_out: int) -> float:
    return 2.0 * field(cfg, "gain", 1.0) ** 2 * fan_in / (fan_in + fan_out)


def _normal_sigma_w2(cfg, fan_in: int, fan_out: int) -> float:
    return fan_in * field(cfg, "std", 0.1) ** 2


def _trunc_normal_sigma_w2(cfg, fan_in: int, fan_out: int) -> float:
    """fan_in E[W^2] = fan_in (Var + mean^2) of the truncated law with *absolute* cut-offs a, b
    (torch.nn.init.trunc_normal_'s definition). A non-zero mean also adds a coherent term
    mean^2 (sum_j x_j)^2 that the mean-field maps ignore (with mean 0 the two notions agree)."""
    mean, std = field(cfg, "mean", 0.0), field(cfg, "std", 0.1)
    lo = (field(cfg, "a", -2.0) - mean) / std  # in units of std, as scipy wants them
    hi = (field(cfg, "b", 2.0) - mean) / std
    m, v = stats.truncnorm.stats(lo, hi, loc=mean, scale=std, moments="mv")
    return fan_in * float(v + m * m)


LSUV_THEORY = ("init=lsuv sets each layer's scale from the data batch (LSUV), so the mean-field "
               "sigma_w^2 is not known before the run")


def _no_sigma_w2(reason: str) -> Callable[[Any, int, int], float]:
    def sigma_w2(cfg, fan_in: int, fan_out: int) -> float:
        raise ValueError(reason)

    return sigma_w2


def _lsuv(model, cfg, x) -> dict:
    """LSUV's rescaling (initlab.lsuv) of a model the orthogonal fill has pre-initialized."""
    from initlab import lsuv  # imports torch and the lsuv package: see the module docstring

    return lsuv.rescale(model, x, field(cfg, "target_var", 1.0), field(cfg, "tol", 0.1), field(cfg, "max_iters", 10))


def _scaled_orthogonal(weight, gain: float, delta: bool):
    """dks's scaled uniform orthogonal sampler (SUO, Martens et al. 2021): a Haar-orthogonal matrix
    times max(sqrt(fan_out / fan_in), 1), so the layer keeps q at init. dks's PyTorch port reads
    the weight as (fan_in, fan_out, ...) (JAX's layout); torch's layers hold (fan_out, fan_in, ...),
    so it fills the transposed view. ``delta``: a conv kernel's centre tap only, zeros elsewhere
    (the delta-orthogonal init of Xiao et al. 2018); a Linear is filled the same either way."""
    import warnings

    from dks.pytorch.parameter_sampling_functions import scaled_uniform_orthogonal_

    with warnings.catch_warnings():  # dks indexes the centre tap with a list (torch >= 2.5 warns)
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
        scaled_uniform_orthogonal_(weight.transpose(0, 1), gain=gain, delta=delta)
    return weight


def _registry(*choices: Init) -> dict[str, Init]:
    return {c.name: c for c in choices}


HE, XAVIER, NORMAL, LECUN = "", (5, 2), (1, 1.2), (8, 2)  # dashes of the init families

INITS: dict[str, Init] = _registry(  # tab10 in pairs of hues per family, then two more
    Init("he_normal", lambda w, c, layer=None: _variance_normal(w, c.factor, c.mode.value),
         _he_sigma_w2, rgb("#1f77b4"), HE),
    Init("he_uniform", lambda w, c, layer=None: _variance_uniform(w, c.factor, c.mode.value),
         _he_sigma_w2, rgb("#17becf"), HE),
    Init("xavier_normal", lambda w, c, layer=None: _init().xavier_normal_(w, gain=c.gain),
         _xavier_sigma_w2, rgb("#2ca02c"), XAVIER),
    Init("xavier_uniform", lambda w, c, layer=None: _init().xavier_uniform_(w, gain=c.gain),
         _xavier_sigma_w2, rgb("#bcbd22"), XAVIER),
    Init("normal", lambda w, c, layer=None: _init().normal_(w, 0.0, c.std), _normal_sigma_w2, rgb("#ff7f0e"), NORMAL),
    Init("small_normal", lambda w, c, layer=None: _init().normal_(w, 0.0, c.std), _normal_sigma_w2,
         rgb("#b8860b"), NORMAL),
    Init("trunc_normal", lambda w, c, layer=None: _init().trunc_normal_(w, c.mean, c.std, c.a, c.b),
         _trunc_normal_sigma_w2, rgb("#8c564b"), (2.5, 1.2)),
    Init("zero", lambda w, c, layer=None: _init().zeros_(w), lambda c, fan_in, fan_out: 0.0,
         rgb("#7f7f7f"), (3, 1.5)),
    Init("orthogonal", lambda w, c, layer=None: _init().orthogonal_(w, gain=c.gain),  # rows or columns
         lambda c, fan_in, fan_out: field(c, "gain", 1.0) ** 2 * fan_in / max(fan_in, fan_out),  # orthonormal
         rgb("#d62728"), (6, 1.5, 1.5, 1.5)),
    Init("scaled_orthogonal", lambda w, c, layer=None: _scaled_orthogonal(w, c.gain, delta=False),
         lambda c, fan_in, fan_out: field(c, "gain", 1.0) ** 2,  # fan_in E[W^2] = gain^2 at any shape
         rgb("#ff9896"), (6, 1.5, 1.5, 1.5)),
    Init("delta_orthogonal", lambda w, c, layer=None: _scaled_orthogonal(w, c.gain, delta=True),
         lambda c, fan_in, fan_out: field(c, "gain", 1.0) ** 2,
         rgb("#c5b0d5"), (6, 1.5, 1.5, 1.5)),
    Init("lecun_normal", lambda w, c, layer=None: _variance_normal(w, 1.0, "fan_in"),
         lambda c, fan_in, fan_out: 1.0, rgb("#9467bd"), LECUN),
    Init("lecun_uniform", lambda w, c, layer=None: _variance_uniform(w, 1.0, "fan_in"),
         lambda c, fan_in, fan_out: 1.0, rgb("#e377c2"), LECUN),
    Init("torch_default", _torch_default, lambda c, fan_in, fan_out: 1.0 / 3.0,  # U(+-1/sqrt(fan_in))
         rgb("#000000"), LECUN),
    Init("lsuv", lambda w, c, layer=None: _init().orthogonal_(w),  # the pre-init: orthonormal, gain 1
         _no_sigma_w2(LSUV_THEORY), rgb("#dbdb8d"), (6, 1.5, 1.5, 1.5, 1.5, 1.5), rescale=_lsuv,
         theory_reason=LSUV_THEORY),
)
