"""What both registries share: reading a config field from any form, and colours as RGB tuples."""

from __future__ import annotations

from enum import Enum
from typing import Any


def field(cfg: Any, name: str, default: Any = None) -> Any:
    """Read ``name`` from a mapping (``.get``) or an attribute object; None means unset.

    A bare choice name (a string) has no fields and yields ``default``; Enum members (the
    project's FanMode, BiasInit) are returned as their values.
    """
    value = cfg.get(name, default) if hasattr(cfg, "get") else getattr(cfg, name, default)
    if value is None:
        return default
    return value.value if isinstance(value, Enum) else value


def rgb(hex_color: str) -> tuple[float, float, float]:
    """'#1f77b4' -> (31/255, 119/255, 180/255): the floats matplotlib's and seaborn's palettes hold."""
    return tuple(int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5))
