"""What a config value may be: ranges declared next to each field, and the one-line refusals.

``number``/``numbers`` declare a field's range in its dataclass metadata; ``Checked.__post_init__``
checks every declared range when ``to_experiment`` instantiates the schema, and the wording of
every refusal (``> 0``, ``in [0, 1)``, ``valid: an integer >= 1 or null``) comes from here, for the
range checks and for the values OmegaConf refuses by type alike.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, ClassVar, Optional, Sequence

from omegaconf import MISSING, DictConfig
from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode, StringNode


class ConfigError(ValueError):
    """A configuration value is out of range; the message is one line naming value and valid range."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


SEED_MAX = 2**32 - 1  # scikit-learn's random_state and NumPy's RandomState accept [0, 2**32 - 1]
INT_MAX = 2**31 - 1   # torch.set_num_threads and friends take a C int
INT64_MAX = 2**63 - 1  # every integer ends up in torch as an int64 (split sizes, shapes)
FLOAT32_MAX = 3.4028234663852886e38  # a scalar torch takes as a float32 (an activation's slope) must fit


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
    (``>= 1``, ``finite and > 0 or null``, ``2 numbers, each in [0, 1)``, ``1 or more integers, each > 0``);
    ``noun`` names a scalar's type first (``an integer >= 1``, ``a float, finite and > 0``). None for a
    field without a range."""
    rng: Optional[Range] = spec.metadata.get("range")
    if rng is None:
        return None
    if spec.metadata.get("list"):
        length = spec.metadata["length"]
        kind = "integers" if rng.integer else "numbers"
        # a list of any length still needs an entry: "integers, each > 0, got []" read as if [] were fine
        return f"{length if length is not None else '1 or more'} {kind}, each {rng.describe()}"
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


def node_takes(parent: Any, key: Any) -> Optional[str]:
    """What the typed node ``key`` of the DictConfig ``parent`` takes (``an integer or null``), for
    a field its parent's declared dataclass lacks: a plugin's config subclass (Optuna's TPE sampler
    declares ``seed``, the SamplerConfig its node is typed by does not); None for other nodes."""
    node = parent._get_node(key, validate_access=False) if isinstance(parent, DictConfig) and isinstance(key, str) \
        else None  # not validated: a struct config lacking the key raised (init.std for he_normal)
    kind = next((t for cls, t in ((BooleanNode, bool), (IntegerNode, int), (FloatNode, float), (StringNode, str))
                 if isinstance(node, cls)), None)
    if kind is None:
        return None
    return _type_takes(Optional[kind] if node._is_optional() else kind)


def refused_field(err: Any, message: str) -> tuple[str, str]:
    """(dotted key, ``message`` ending with what the field takes) for OmegaConf's refusal ``err``
    (an OmegaConfBaseException) of a value: for an item of a list field (``model.channels[0]``) or
    a dict merged into one (``model.channels={a:1}``), the list field. OmegaConf's own list of an
    enum's values (``expected one of [a, b]``) gives way to the same words (``valid: one of a, b``);
    ``message`` is kept as it is where the field says nothing more."""
    full, schema, key, node = err.full_key, err.object_type, err.key, err.parent_node
    parent = node._get_parent() if (key is None or isinstance(key, int)) and node is not None else None
    if parent is not None and getattr(parent, "_metadata", None) is not None:
        schema, key, full = parent._metadata.object_type, node._key(), re.sub(r"\[\d+\]$", "", full)
    valid = field_takes(schema, key) or node_takes(node, key)
    if valid is None:
        return full, message
    return full, re.sub(r",? expected one of \[.*\]$", "", message.rstrip(".")) + f"; valid: {valid}"


def valid_names(names: Sequence[str], none: str, label: str = "valid") -> str:
    """``valid: a, b`` (``label`` may say what they are: ``valid keys of hydra``), or, where there are
    none, the words ``none`` (``logger=none takes no parameters``): a bare "valid:" with nothing after
    it read as a line cut short."""
    return f"{label}: {', '.join(names)}" if names else none


def derived_note(schema: Any, keys: Sequence[str]) -> str:
    """For an unknown-key refusal: ``; KEY is not a parameter: WHY`` for each of ``keys`` that
    ``schema`` computes from its fields as a property (reduce_on_plateau's ``mode`` follows its
    monitor), WHY the property's first sentence; "" where none is."""
    notes = []
    for key in keys:
        prop = getattr(schema, key, None) if isinstance(schema, type) else None
        if isinstance(prop, property):
            why = " ".join((prop.__doc__ or "").split()).split(". ")[0].rstrip(".")
            notes.append(f"; {key} is not a parameter: {why or 'it follows from the others'}")
    return "".join(notes)


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


def _require_choice(group: str, name: str, registry: dict) -> None:
    """``activation.name=foo`` composes (the YAML file sets the name, a plain override replaces it)."""
    _require(name in registry, f"{group}.name={name!r} is no {group}; valid: {', '.join(registry)} "
                               f"(choose one with {group}=NAME)")
