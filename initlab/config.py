"""Typed configuration: one dataclass per config-group choice, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` hold the values; these dataclasses hold the types and the ranges.
Hydra rejects unknown keys and badly typed values while composing; ``to_experiment`` turns the
composed config into dataclass instances, whose ``__post_init__`` checks every field against the
range declared next to it (``field(metadata=...)`` built with ``number``/``numbers`` below) and
raises ``ConfigError`` with one line: the full dotted name, the value and the valid range.

Ranges are the real ones, including limits that scikit-learn, NumPy or torch would otherwise
enforce deep inside a run (seeds < 2**32 for scikit-learn's ``random_state``, Adam's betas in
[0, 1), ...). Checks that need the data (split sizes against the sample count) live in
``initlab.data`` and run right after loading, before any model is built.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, ClassVar, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from initlab import choices


class ConfigError(ValueError):
    """A configuration value is out of range; the message is one line naming value and valid range."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


SEED_MAX = 2**32 - 1  # scikit-learn's random_state and NumPy's RandomState accept [0, 2**32 - 1]
INT_MAX = 2**31 - 1   # torch.set_num_threads and friends take a C int
INT64_MAX = 2**63 - 1  # every integer ends up in torch as an int64 (split sizes, shapes)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


@dataclass(frozen=True)
class Range:
    """An interval of finite numbers; ``None`` ends are unbounded, ``*_open`` ends excluded.

    ``describe()`` gives the wording of every message: ``> 0``, ``>= 0``, ``in [0, 1)``; floats
    add ``finite and`` where an end is unbounded (NaN and inf fail every range). Integers beyond
    int64 fail too: torch cannot take them.
    """

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and (not isinstance(value, int) or abs(value) > INT64_MAX):
            return False
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return (f"in {'(' if self.lo_open else '['}{_fmt(self.lo)}, {_fmt(self.hi)}"
                    f"{')' if self.hi_open else ']'}")
        finite = "" if self.integer else "finite and "
        if self.lo is not None:
            return f"{finite}{'>' if self.lo_open else '>='} {_fmt(self.lo)}"
        if self.hi is not None:
            return f"{finite}{'<' if self.hi_open else '<='} {_fmt(self.hi)}"
        return "finite" if not self.integer else "an integer"


def number(default: Any = MISSING, *, gt: Optional[float] = None, ge: Optional[float] = None,
           lt: Optional[float] = None, le: Optional[float] = None, integer: bool = False,
           optional: bool = False) -> Any:
    """A dataclass field whose value must lie in the given range (``optional``: or be None)."""
    rng = Range(lo=gt if gt is not None else ge, hi=lt if lt is not None else le,
                lo_open=gt is not None, hi_open=lt is not None, integer=integer)
    return field(default=default, metadata={"range": rng, "optional": optional})


def numbers(default: Any = MISSING, *, length: Optional[int] = None, **bounds: Any) -> Any:
    """A list field: ``length`` numbers (any number if None), each in the range of ``number``."""
    spec = number(**bounds)
    return field(default=default, metadata={**spec.metadata, "list": True, "length": length})


def takes(spec: Any, noun: bool = False) -> Optional[str]:
    """What a ``number`` or ``numbers`` dataclass field takes, worded as every range message is
    (``>= 1``, ``finite and > 0 or null``, ``2 numbers, each in [0, 1)``); ``noun`` names a scalar's
    type first (``an integer >= 1``, ``a float, finite and > 0``). None for a field without a range."""
    rng: Optional[Range] = spec.metadata.get("range")
    if rng is None:
        return None
    if spec.metadata.get("list"):
        length = spec.metadata["length"]
        kind = "integers" if rng.integer else "numbers"
        return f"{length if length is not None else ''} {kind}, each {rng.describe()}".lstrip()
    valid = rng.describe()
    if noun and not valid.startswith("an integer"):
        valid = f"an integer {valid}" if rng.integer else f"a float{'' if valid.startswith('in ') else ','} {valid}"
    return valid + (" or null" if spec.metadata["optional"] else "")


def _type_takes(hint: Any) -> Optional[str]:
    """What an annotation admits, in a message's words: ``one of fan_in, fan_out``, ``true or
    false``, ``a string``, with ``or null`` for Optional; None for a type without such words."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        inner = _type_takes(args[0])
        return inner and f"{inner} or null"
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "one of " + ", ".join(str(m.value) for m in hint)
    if is_dataclass(hint):  # a nested config (early_stopping): set its keys one by one
        return "its keys, each set on its own (" + ", ".join(f.name for f in fields(hint)) + ")"
    return {bool: "true or false", str: "a string", int: "an integer", float: "a float"}.get(hint)


def field_takes(schema: Any, key: Any) -> Optional[str]:
    """What field ``key`` of the dataclass ``schema`` takes (``takes`` with its type named, or its
    annotation's words for fields without a range: enums, bools, strings), for a value OmegaConf
    refused by type (``epochs=abc``, ``optimizer.lr=null``, ``resume=maybe``); None otherwise."""
    spec = next((f for f in fields(schema) if f.name == key), None) if is_dataclass(schema) else None
    if spec is None:
        return None
    if "range" in spec.metadata:
        return takes(spec, noun=True)
    try:
        hint = typing.get_type_hints(schema)[key]
    except (NameError, TypeError, KeyError):
        return None
    return _type_takes(hint)


def refused_field(err: Any, message: str) -> tuple[str, str]:
    """(dotted key, ``message`` ending with what the field takes) for OmegaConf's refusal ``err``
    (an OmegaConfBaseException) of a value: for an item of a list field (``model.channels[0]``),
    the list field. OmegaConf's own list of an enum's values (``expected one of [a, b]``) gives way
    to the same words (``valid: one of a, b``); ``message`` is kept as it is where the field says
    nothing more."""
    full, schema, key, node = err.full_key, err.object_type, err.key, err.parent_node
    parent = node._get_parent() if isinstance(key, int) and node is not None else None
    if parent is not None and getattr(parent, "_metadata", None) is not None:
        schema, key, full = parent._metadata.object_type, node._key(), re.sub(r"\[\d+\]$", "", full)
    valid = field_takes(schema, key)
    if valid is None:
        return full, message
    return full, re.sub(r",? expected one of \[.*\]$", "", message.rstrip(".")) + f"; valid: {valid}"


def check_fields(node: Any, prefix: str) -> None:
    """Check every declared range of ``node``; ``prefix`` makes the full name (``optimizer.``)."""
    for f in fields(node):
        rng: Optional[Range] = f.metadata.get("range")
        if rng is None:
            continue
        name, value = prefix + f.name, getattr(node, f.name)
        _require(value != MISSING, f"{name} has no value (~{name} removed it); valid: {takes(f, noun=True)}")
        if f.metadata.get("list"):
            values = list(value)
            length = f.metadata["length"]
            ok = (length is None or len(values) == length) and len(values) > 0
            _require(ok and all(rng.contains(v) for v in values), f"{name} must be {takes(f)}, got {values}")
        elif not (value is None and f.metadata["optional"]):
            valid = takes(f)
            if rng.integer and isinstance(value, int) and value > INT64_MAX and rng.contains(INT64_MAX):
                valid += " and <= 2**63 - 1 (torch's int64)"
            _require(rng.contains(value), f"{name} must be {valid}, got {value}")


class Checked:
    """Mixin: ``__post_init__`` checks the declared ranges, then ``check()``'s relations."""

    PREFIX: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_fields(self, self.PREFIX)
        self.check()

    def check(self) -> None:
        """Relations between fields (``a < b``); override where a schema has them."""


class FanMode(str, Enum):
    fan_in = "fan_in"
    fan_out = "fan_out"


class BiasInit(str, Enum):
    zeros = "zeros"
    normal = "normal"
    torch_default = "torch_default"  # U(+-1/sqrt(fan_in)), what nn.Linear/nn.Conv2d draw when built


class Norm(str, Enum):
    none = "none"
    batchnorm = "batchnorm"
    layernorm = "layernorm"


class BranchInit(str, Enum):  # initlab.models.branches
    default = "default"
    zero_last = "zero_last"
    fixup = "fixup"
    skipinit = "skipinit"
    rezero = "rezero"


class ConvNorm(str, Enum):
    none = "none"
    batchnorm = "batchnorm"


class ApplyTo(str, Enum):
    all = "all"    # every Linear/Conv weight (and Embedding with init.embedding=true)
    head = "head"  # only the output layer (the weight the model's output site names)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Objective(str, Enum):
    """What train.py returns to a sweeper that optimizes (hydra/sweeper=optuna): a final metric
    of the run (initlab.objective). Test metrics are not offered: a search tuned on the test split
    leaves no unbiased estimate of the chosen settings."""

    val_acc = "val_acc"
    val_loss = "val_loss"
    train_acc = "train_acc"
    train_loss = "train_loss"


class Loss(str, Enum):
    """The training objective (initlab.losses): cross-entropy on the logits, or the mean squared
    error between the logits and one-hot targets."""

    cross_entropy = "cross_entropy"
    mse = "mse"


class Monitor(str, Enum):
    """A validation metric that drives training decisions (never the test set's)."""

    val_loss = "val_loss"
    val_acc = "val_acc"


class PlateauMonitor(str, Enum):
    train_loss = "train_loss"
    train_acc = "train_acc"
    val_loss = "val_loss"
    val_acc = "val_acc"


class Mode(str, Enum):
    min = "min"
    max = "max"


class KeptCheckpoint(str, Enum):
    """Which checkpoints a job keeps once it ends: ``last`` is checkpoint.pt (the whole train state
    after the last epoch, which lets the run be extended), ``best`` is best.pt (the weights of the
    best epoch by ``early_stopping.monitor``)."""

    none = "none"
    last = "last"
    best = "best"
    both = "both"


# --- activation -------------------------------------------------------------------------------
def _require_choice(group: str, name: str, registry: dict) -> None:
    """``activation.name=foo`` composes (the YAML file sets the name, a plain override replaces it)."""
    _require(name in registry, f"{group}.name={name!r} is no {group}; valid: {', '.join(registry)} "
                               f"(choose one with {group}=NAME)")


class Transform(str, Enum):
    """Kernel shaping of the activation (initlab.kernel_shaping, DeepMind's ``dks`` package):
    ``tat`` (Zhang et al. 2022) or ``dks`` (Martens et al. 2021), solved for the built network."""

    none = "none"
    tat = "tat"
    dks = "dks"


@dataclass
class ActivationConfig(Checked):
    """``transform`` reshapes phi for the network it is built into; its targets (null: dks's
    defaults 0.9, 0.3, 1.5) are TAT's eta (C_f(0) of leaky ReLU nets), tau (C''_f(1) of smooth
    ones) and DKS's zeta (C'_f(1))."""

    PREFIX: ClassVar[str] = "activation."
    name: str = MISSING
    transform: Transform = Transform.none
    c_val_0_target: Optional[float] = number(None, ge=0, le=1, optional=True)
    c_curve_target: Optional[float] = number(None, gt=0, optional=True)
    c_slope_1_target: Optional[float] = number(None, gt=1, optional=True)

    def targets_read(self) -> tuple[str, ...]:
        """The targets ``transform`` reads: TAT's eta for leaky ReLU, its tau otherwise; DKS's zeta."""
        if self.transform == Transform.tat:
            return ("c_val_0_target",) if self.name == "leaky_relu" else ("c_curve_target",)
        return ("c_slope_1_target",) if self.transform == Transform.dks else ()

    def check(self) -> None:
        _require_choice("activation", self.name, choices.ACTIVATIONS)
        reads = self.targets_read()
        for key in ("c_val_0_target", "c_curve_target", "c_slope_1_target"):
            value = getattr(self, key)
            _require(value is None or key in reads,
                     f"activation.{key}={value} changes nothing with activation.transform={self.transform.value} "
                     f"and activation={self.name}; it reads {', '.join(reads) or 'no target'}")


# our activation names -> dks's (gelu by its ``approximate``: gelu_exact or gelu); linear has nothing to shape
DKS_NAMES = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu_exact", "leaky_relu": "leaky_relu",
             "elu": "elu", "selu": "selu", "silu": "swish"}


def dks_name(activation: Any) -> str:
    """dks's name for an activation config; ConfigError where dks has no such activation (linear)
    or another parameterization of it (elu with alpha != 1)."""
    name = activation.name
    _require(name in DKS_NAMES, f"activation.transform={activation.transform.value} needs a nonlinearity dks "
                                f"transforms, got activation={name}; valid: {', '.join(DKS_NAMES)}")
    _require(name != "elu" or activation.alpha == 1.0,
             f"activation.alpha must be 1 with activation.transform (dks's elu), got {getattr(activation, 'alpha', None)}")
    _require(name != "relu" or activation.transform != Transform.tat,
             "activation.transform=tat does not take relu (TAT shapes leaky ReLU; dks refuses relu); "
             "use activation=leaky_relu")
    if name == "gelu" and activation.approximate == "tanh":
        return "gelu"
    return DKS_NAMES[name]


def check_transform(activation: ActivationConfig, model: "ModelConfig") -> None:
    """ConfigError (one line) unless ``activation.transform`` applies: a dks nonlinearity in a
    plain MLP (initlab.kernel_shaping derives the transform for that structure only)."""
    if activation.transform == Transform.none:
        return
    dks_name(activation)
    norm = getattr(getattr(model, "norm", None), "value", None)
    _require(model.name == "mlp" and norm == "none",
             f"activation.transform={activation.transform.value} needs a plain network, model=mlp with "
             f"model.norm=none; got model={model.name}" + (f" model.norm={norm}" if norm else "")
             + " (residual sums, normalization, pooling and attention are not derived)")


LEAKY_RELU_SLOPE = 0.01  # torch.nn.LeakyReLU's default negative_slope, as conf/activation/leaky_relu.yaml


@dataclass
class LeakyReLUConfig(ActivationConfig):
    negative_slope: float = number(ge=0)

    def check(self) -> None:
        super().check()
        _require(self.transform == Transform.none or self.negative_slope == LEAKY_RELU_SLOPE,
                 f"activation.negative_slope={self.negative_slope} changes nothing with activation.transform="
                 f"{self.transform.value}: dks solves the slope (leave it at {LEAKY_RELU_SLOPE})")


@dataclass
class ELUConfig(ActivationConfig):
    alpha: float = number(gt=0)


@dataclass
class GELUConfig(ActivationConfig):
    approximate: str = MISSING

    def check(self) -> None:
        super().check()
        _require(self.approximate in ("none", "tanh"),
                 f"activation.approximate must be one of none, tanh; got {self.approximate!r}")


# --- init -------------------------------------------------------------------------------------
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


# --- dataset ----------------------------------------------------------------------------------
@dataclass
class DatasetConfig(Checked):
    """``KIND`` (vectors, images or sequences; a class constant, not a config key) says what the
    data gives a model, so model/dataset fit is checked before anything loads; ``input_shape()``
    is one sample's shape."""

    PREFIX: ClassVar[str] = "dataset."
    KIND: ClassVar[str] = "vectors"
    name: str = MISSING
    val_size: int = number(0, ge=0, integer=True)  # checked against the class counts in initlab.data

    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError


@dataclass
class DigitsConfig(DatasetConfig):
    KIND: ClassVar[str] = "images"
    test_size: int = number(gt=0, integer=True)  # checked against the 1797 samples in initlab.data
    split_seed: int = number(ge=0, le=SEED_MAX, integer=True)
    augment: bool = False  # random crop (zero padding 4) + horizontal flip of each training batch

    def input_shape(self) -> tuple[int, ...]:
        return (1, 8, 8)


CHANNELS = {"mnist": 1, "fashion_mnist": 1, "cifar10": 3}
SIDES = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32}


@dataclass
class TorchvisionConfig(DatasetConfig):
    """MNIST, Fashion-MNIST, CIFAR-10 through torchvision's dataset classes.

    ``split_seed`` seeds the validation split, so it changes the run only when ``val_size`` > 0.
    """

    KIND: ClassVar[str] = "images"
    root: str = MISSING
    download: bool = MISSING
    mean: list[float] = numbers()
    std: list[float] = numbers(gt=0)
    split_seed: int = number(0, ge=0, le=SEED_MAX, integer=True)
    augment: bool = False

    def check(self) -> None:
        _require(bool(self.root.strip()), "dataset.root must be a folder path, got ''")
        channels = CHANNELS.get(self.name)
        for key in ("mean", "std"):
            values = list(getattr(self, key))
            _require(channels is None or len(values) == channels,
                     f"dataset.{key} must have one value per channel ({channels} for {self.name}), got {values}")

    def input_shape(self) -> tuple[int, ...]:
        return (CHANNELS[self.name], SIDES[self.name], SIDES[self.name])


@dataclass
class SyntheticConfig(DatasetConfig):
    """Generated sets: sizes and the seed of the one draw train and test come from."""

    n_train: int = number(gt=0, integer=True)
    n_test: int = number(gt=0, integer=True)
    seed: int = number(ge=0, le=SEED_MAX, integer=True)

    def input_shape(self) -> tuple[int, ...]:
        return (2,)


@dataclass
class NoisyConfig(SyntheticConfig):
    """moons, circles, xor, spiral: ``noise`` is the std of Gaussian noise (coordinates or angle)."""

    noise: float = number(ge=0)


@dataclass
class BlobsConfig(SyntheticConfig):
    """make_blobs: the spread of each cluster is ``cluster_std`` (it has no separate noise)."""

    n_features: int = number(gt=0, integer=True)
    n_classes: int = number(ge=2, integer=True)
    cluster_std: float = number(gt=0)

    def input_shape(self) -> tuple[int, ...]:
        return (self.n_features,)


@dataclass
class CirclesConfig(NoisyConfig):
    factor: float = number(ge=0, lt=1)  # make_circles' range


@dataclass
class SpiralConfig(NoisyConfig):
    n_classes: int = number(ge=2, integer=True)


@dataclass
class ShapesConfig(NoisyConfig):
    """Synthetic images of four shape classes; ``noise`` is the std of Gaussian pixel noise."""

    KIND: ClassVar[str] = "images"
    size: int = number(ge=8, integer=True)  # side in pixels: a shape spans at least 3 pixels
    channels: int = number(gt=0, integer=True)
    augment: bool = False

    def input_shape(self) -> tuple[int, ...]:
        return (self.channels, self.size, self.size)


@dataclass
class MajorityConfig(SyntheticConfig):
    """Token sequences labelled by their most frequent voting token (tokens 0..n_classes-1)."""

    KIND: ClassVar[str] = "sequences"
    vocab_size: int = number(ge=2, integer=True)
    seq_len: int = number(gt=0, integer=True)
    n_classes: int = number(ge=2, integer=True)

    def check(self) -> None:
        _require(self.n_classes <= self.vocab_size, f"dataset.n_classes must be <= dataset.vocab_size "
                                                    f"({self.vocab_size}; the voting tokens are part of the "
                                                    f"vocabulary), got {self.n_classes}")

    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)


@dataclass
class ImdbConfig(DatasetConfig):
    """IMDB reviews from the aclImdb folders under ``root``: a vocabulary of ``vocab_size`` ids
    (padding and unknown included), each review cut or padded to ``seq_len`` tokens."""

    KIND: ClassVar[str] = "sequences"
    root: str = MISSING
    vocab_size: int = number(ge=3, integer=True)
    seq_len: int = number(gt=0, integer=True)
    split_seed: int = number(0, ge=0, le=SEED_MAX, integer=True)

    def check(self) -> None:
        _require(bool(self.root.strip()), "dataset.root must be a folder path, got ''")

    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)


# --- optimizer --------------------------------------------------------------------------------
@dataclass
class OptimizerConfig(Checked):
    PREFIX: ClassVar[str] = "optimizer."
    name: str = MISSING
    lr: float = number(gt=0)
    weight_decay: float = number(0.0, ge=0)


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = number(0.0, ge=0, lt=1)
    nesterov: bool = False

    def check(self) -> None:
        _require(not self.nesterov or self.momentum > 0, "optimizer.nesterov=true needs optimizer.momentum > 0")


@dataclass
class RMSpropConfig(OptimizerConfig):
    alpha: float = number(ge=0, lt=1)
    eps: float = number(gt=0)
    momentum: float = number(0.0, ge=0, lt=1)


@dataclass
class AdamConfig(OptimizerConfig):
    betas: list[float] = numbers(length=2, ge=0, lt=1)
    eps: float = number(gt=0)


# --- logger -----------------------------------------------------------------------------------
@dataclass
class LoggerConfig(Checked):
    """``none``: no logger; the records are the CSVs and result.json (initlab.train.tensorboard)."""

    PREFIX: ClassVar[str] = "logger."
    name: str = MISSING


@dataclass
class TensorBoardConfig(LoggerConfig):
    """TensorBoard event files in ``<job>/tb/``; ``histograms``: weights, gradients and every site's
    pre-activations and activations on the probe batch each epoch (one more probe pass)."""

    histograms: bool = True


# --- scheduler --------------------------------------------------------------------------------
@dataclass
class SchedulerConfig(Checked):
    """An epoch-wise learning-rate schedule (initlab.train.schedule). ``warmup_epochs`` > 0 first
    raises the lr linearly, ``optimizer.lr * e / warmup_epochs`` in epoch e, then hands over."""

    PREFIX: ClassVar[str] = "scheduler."
    name: str = MISSING
    warmup_epochs: int = number(0, ge=0, integer=True)


@dataclass
class StepSchedulerConfig(SchedulerConfig):
    """torch.optim.lr_scheduler.StepLR: lr times ``gamma`` every ``step_size`` epochs."""

    step_size: int = number(gt=0, integer=True)
    gamma: float = number(gt=0, le=1)


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    """torch.optim.lr_scheduler.CosineAnnealingLR; ``T_max`` null = the epochs after warmup."""

    T_max: Optional[int] = number(None, gt=0, integer=True, optional=True)
    eta_min: float = number(0.0, ge=0)


@dataclass
class PlateauSchedulerConfig(SchedulerConfig):
    """torch.optim.lr_scheduler.ReduceLROnPlateau on ``monitor`` (its other arguments torch's defaults)."""

    monitor: PlateauMonitor = MISSING
    mode: Mode = MISSING
    factor: float = number(gt=0, lt=1)
    patience: int = number(ge=0, integer=True)
    min_lr: float = number(0.0, ge=0)


# --- early stopping ---------------------------------------------------------------------------
@dataclass
class EarlyStoppingConfig(Checked):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs,
    then restore the best epoch's weights; ``restarts`` > 0 trains again from a fresh init (a seed
    derived from ``seed``) while the best value is worse than ``restart_below`` (for val_acc:
    below it; for val_loss: above it)."""

    PREFIX: ClassVar[str] = "early_stopping."
    enabled: bool = False
    monitor: Monitor = Monitor.val_loss
    patience: int = number(5, ge=1, integer=True)
    min_delta: float = number(0.0, ge=0)
    restarts: int = number(0, ge=0, integer=True)
    restart_below: Optional[float] = number(None, optional=True)

    def check(self) -> None:
        _require(self.restarts == 0 or self.restart_below is not None,
                 f"early_stopping.restarts={self.restarts} needs early_stopping.restart_below (the value of "
                 f"{self.monitor.value} an attempt must reach), got null")
        _require(self.restarts == 0 or self.enabled,
                 "early_stopping.restarts > 0 needs early_stopping.enabled=true")
        _require(self.restart_below is None or self.restarts > 0,
                 f"early_stopping.restart_below={self.restart_below} changes nothing with "
                 f"early_stopping.restarts=0; set restarts > 0 or restart_below=null")


# --- model and experiment ---------------------------------------------------------------------
MODELS = ("mlp", "resmlp", "cnn", "resnet18", "transformer")  # initlab.models.MODELS builds them


@dataclass
class ModelConfig(Checked):
    """Fields every model has: the bias init of every Linear/Conv (initlab.inits)."""

    PREFIX: ClassVar[str] = "model."
    EMBEDDINGS: ClassVar[bool] = False  # whether the model has nn.Embedding layers (init.embedding acts)
    name: str = MISSING
    bias_init: BiasInit = MISSING
    bias_std: float = number(ge=0)

    def check(self) -> None:
        _require(self.name in MODELS, f"model must be one of {', '.join(MODELS)}, got {self.name!r}")
        if self.bias_init == BiasInit.normal:
            _require(self.bias_std > 0, f"model.bias_std (with model.bias_init=normal) must be > 0, "
                                        f"got {self.bias_std}")
        else:  # a value that would change nothing is refused rather than ignored
            _require(self.bias_std == 0, f"model.bias_std must be 0 with model.bias_init={self.bias_init.value} "
                                         f"(set model.bias_init=normal to use it), got {self.bias_std}")

    def check_depth(self, depth: int) -> None:
        """Relations between the top-level ``depth`` and this model's fields (ConfigError)."""


def _check_fixup_norm(branch_init: BranchInit, norm: str, model: str) -> None:
    """Fixup's network has no normalization (Zhang et al. 2019): a norm would divide its scaling
    away, and a norm after a zeroed layer divides by sqrt(eps)."""
    _require(branch_init != BranchInit.fixup or norm == "none",
             f"model.branch_init=fixup needs a network without normalization (Zhang et al. 2019), got "
             f"model={model} with model.norm={norm}: set model.norm=none")


@dataclass
class MLPConfig(ModelConfig):
    """``depth`` hidden Linear(width) [-> norm] -> activation blocks, then the output Linear."""

    width: int = number(gt=0, integer=True)
    norm: Norm = Norm.none


@dataclass
class ResMLPConfig(MLPConfig):
    """A plain stem of 1 (odd depth) or 2 (even depth) Linear layers, (depth - 1) // 2 residual
    blocks of two Linear layers, the output Linear: ``depth`` hidden Linear layers as in ``mlp``."""

    preact: bool = False
    branch_init: BranchInit = BranchInit.default

    def check(self) -> None:
        super().check()
        _check_fixup_norm(self.branch_init, self.norm.value, "resmlp")

    def check_depth(self, depth: int) -> None:
        _require(depth >= 3, f"depth must be >= 3 with model=resmlp (a stem of 1 or 2 Linear layers and at "
                             f"least one residual block of 2), got {depth}")


@dataclass
class CNNConfig(ModelConfig):
    """``depth`` 3x3 conv layers spread over ``len(channels)`` stages (max-pool between stages)."""

    channels: list[int] = numbers(gt=0, integer=True)
    norm: ConvNorm = ConvNorm.none
    residual: bool = False
    branch_init: BranchInit = BranchInit.default

    def check(self) -> None:
        super().check()
        _require(self.branch_init == BranchInit.default or self.residual,
                 f"model.branch_init={self.branch_init.value} needs residual branches: set model.residual=true "
                 f"(model=cnn without it has none)")
        _check_fixup_norm(self.branch_init, self.norm.value, "cnn")

    def check_depth(self, depth: int) -> None:
        stages = len(self.channels)
        _require(depth >= stages, f"depth must be >= {stages} with model=cnn (one conv layer per stage of "
                                  f"model.channels={list(self.channels)} at least), got {depth}")


@dataclass
class ResNet18Config(ModelConfig):
    """torchvision's ResNet-18; its depth is fixed (the top-level ``depth`` is not used)."""

    cifar_stem: bool = True
    norm: ConvNorm = ConvNorm.batchnorm
    branch_init: BranchInit = BranchInit.default

    def check(self) -> None:
        super().check()
        _check_fixup_norm(self.branch_init, self.norm.value, "resnet18")


@dataclass
class TransformerConfig(ModelConfig):
    """``depth`` encoder layers of torch.nn.TransformerEncoderLayer."""

    EMBEDDINGS: ClassVar[bool] = True

    d_model: int = number(gt=0, integer=True)
    nhead: int = number(gt=0, integer=True)
    dim_feedforward: int = number(gt=0, integer=True)
    norm_first: bool = False
    dropout: float = number(0.0, ge=0, lt=1)

    def check(self) -> None:
        super().check()
        _require(self.d_model % self.nhead == 0, f"model.d_model must be a multiple of model.nhead "
                                                 f"({self.nhead}), got {self.d_model}")


@dataclass
class ExperimentConfig(Checked):
    activation: ActivationConfig = MISSING
    init: InitConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    model: ModelConfig = MISSING
    logger: LoggerConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    depth: int = number(gt=0, integer=True)
    epochs: int = number(ge=0, integer=True)
    batch_size: int = number(gt=0, integer=True)
    seed: int = number(ge=0, le=SEED_MAX, integer=True)
    device: Device = MISSING
    probe_size: int = number(gt=0, integer=True)  # capped at the training-set size
    threads: Optional[int] = number(None, gt=0, le=INT_MAX, integer=True, optional=True)
    resume: bool = True
    checkpoint: KeptCheckpoint = KeptCheckpoint.none
    checkpoint_every_s: float = number(0.0, ge=0.0, le=1e9)  # seconds of a run between checkpoints; 0: every epoch
    jacobian_every: int = number(0, ge=0, integer=True)
    loss: Loss = Loss.cross_entropy
    log_every_steps: int = number(0, ge=0, le=INT_MAX, integer=True)  # steps.csv every k optimizer steps; 0: off
    distributions_every: int = number(0, ge=0, le=INT_MAX, integer=True)  # distributions.csv at 0 and every k epochs
    objective: Optional[Objective] = None  # returned to an optimizing sweeper (initlab.objective); null: nothing

    def check(self) -> None:
        self.model.check_depth(self.depth)
        check_transform(self.activation, self.model)
        needs_val = []
        if self.early_stopping.enabled:
            needs_val.append(f"early_stopping.enabled=true (monitor {self.early_stopping.monitor.value})")
        if self.checkpoint in (KeptCheckpoint.best, KeptCheckpoint.both):
            needs_val.append(f"checkpoint={self.checkpoint.value} (best by {self.early_stopping.monitor.value})")
        plateau = getattr(self.scheduler, "monitor", None)
        if plateau is not None and plateau.value.startswith("val_"):
            needs_val.append(f"scheduler.monitor={plateau.value}")
        if self.objective is not None and self.objective.value.startswith("val_"):
            needs_val.append(f"objective={self.objective.value}")
        _require(not needs_val or self.dataset.val_size > 0,
                 f"{', '.join(needs_val)} needs a validation split: set dataset.val_size > 0")
        with_embeddings = [name for name, schema in SCHEMAS["model"].items() if schema.EMBEDDINGS]
        _require(not self.init.embedding or self.model.EMBEDDINGS,
                 f"init.embedding=true changes nothing with model={self.model.name} (no embedding layers); "
                 f"models with embeddings: {', '.join(with_embeddings)}")


SCHEMAS: dict[str, dict[str, type]] = {
    "activation": {"base": ActivationConfig, "leaky_relu": LeakyReLUConfig, "elu": ELUConfig,
                   "gelu": GELUConfig},
    "init": {"base": InitConfig, "variance_scaling": VarianceScalingConfig, "gain": GainConfig,
             "normal": NormalConfig, "trunc_normal": TruncNormalConfig, "lsuv": LSUVConfig},
    "dataset": {"digits": DigitsConfig, "torchvision": TorchvisionConfig, "noisy": NoisyConfig,
                "blobs": BlobsConfig, "circles": CirclesConfig, "spiral": SpiralConfig, "shapes": ShapesConfig,
                "majority": MajorityConfig, "imdb": ImdbConfig},
    "optimizer": {"sgd": SGDConfig, "rmsprop": RMSpropConfig, "adam": AdamConfig},
    "scheduler": {"base": SchedulerConfig, "step": StepSchedulerConfig, "cosine": CosineSchedulerConfig,
                  "reduce_on_plateau": PlateauSchedulerConfig},
    "model": {"mlp": MLPConfig, "resmlp": ResMLPConfig, "cnn": CNNConfig, "resnet18": ResNet18Config,
              "transformer": TransformerConfig},
    "logger": {"none": LoggerConfig, "tensorboard": TensorBoardConfig},
}


def register_configs() -> None:
    """Store every schema under ``schema/<group>/<name>``; the YAML files extend them."""
    cs = ConfigStore.instance()
    cs.store(name="experiment_schema", node=ExperimentConfig)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)


TOP_LEVEL_KEYS = tuple(f.name for f in fields(ExperimentConfig))
HYDRA_KEY = "hydra"  # Hydra's own node (``hydra.sweeper.params`` from experiment files, ...)


def reject_unknown_top_level_keys(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming keys of ``cfg`` that ``ExperimentConfig`` lacks (``hydra`` passes)."""
    unknown = sorted(set(cfg.keys()) - set(TOP_LEVEL_KEYS) - {HYDRA_KEY})
    _require(not unknown, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"valid top-level keys: {', '.join(sorted(TOP_LEVEL_KEYS))}")


def _reject_unknown_keys(cfg: DictConfig) -> None:
    """Hydra refuses ``epoch=3`` and ``init.factr=2`` itself, but ``+epoch=3`` and ``+init.factr=2``
    add keys that ``OmegaConf.to_object`` would drop silently: a typo would train the defaults."""
    reject_unknown_top_level_keys(cfg)
    for group in (*SCHEMAS, "early_stopping"):
        node = cfg[group]
        allowed = {f.name for f in fields(OmegaConf.get_type(node))}
        unknown = sorted(set(node.keys()) - allowed)
        where = f"for {group}={node.name}" if group in SCHEMAS else f"in {group}"
        _require(not unknown, f"unknown {group} parameter(s) {', '.join(unknown)} {where}; "
                              f"valid: {', '.join(sorted(allowed - {'name'}))}")


def to_experiment(cfg: DictConfig) -> ExperimentConfig:
    """Instantiate the typed config; any value out of its range raises a one-line ``ConfigError``."""
    _reject_unknown_keys(cfg)
    return OmegaConf.to_object(cfg)
