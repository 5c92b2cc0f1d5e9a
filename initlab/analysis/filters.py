"""Which runs an analysis keeps (``KEY=V1,V2`` filters) and the folder a filtered analysis goes to.

A filter value is read as train.py reads an override's value (decimal numbers, booleans, lists,
text), so it matches the runs whatever its spelling: numbers within a relative tolerance, lists
element by element, text ignoring case.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import math
import re

import pandas as pd
import yaml

log = logging.getLogger(__name__)


REL_TOL = 1e-9  # float filters: Hydra's range(0.1, 0.5, 0.1) writes 0.30000000000000004


def _parse(value):
    """A filter value or a runs.csv cell as Python: numbers (decimal, as train.py reads ``depth=010``:
    10, not YAML's octal 8), booleans, lists ("[0.5, 0.9]"), or str."""
    if not isinstance(value, str):
        return value
    for parse in (int, float, ast.literal_eval, yaml.safe_load):
        try:
            return parse(value.strip())
        except (ValueError, SyntaxError, yaml.YAMLError):
            continue
    return value


def _canonical(value: str) -> str:
    """How a filter value is written in a folder name: as the value it matches (``02`` and ``2``,
    ``0.50`` and ``.5``, ``TANH`` and ``tanh`` name one folder)."""
    parsed = _parse(value)
    if isinstance(parsed, (list, tuple)):
        return "[" + ",".join(_canonical(str(v)) for v in parsed) + "]"
    if isinstance(parsed, float) and parsed.is_integer():
        return str(int(parsed))
    return str(parsed).lower() if isinstance(parsed, (str, bool)) else repr(parsed)


def _same(cell, wanted) -> bool:
    """Equal as values: numbers within REL_TOL relative, lists element by element, text ignoring case."""
    if isinstance(cell, (list, tuple)) or isinstance(wanted, (list, tuple)):
        return (isinstance(cell, (list, tuple)) and isinstance(wanted, (list, tuple)) and len(cell) == len(wanted)
                and all(_same(a, b) for a, b in zip(cell, wanted)))
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (cell, wanted))
    if numbers:
        return math.isclose(cell, wanted, rel_tol=REL_TOL, abs_tol=0.0) or (math.isnan(cell) and math.isnan(wanted))
    return str(cell).lower() == str(wanted).lower()


def _matches(column: pd.Series, values: list[str]) -> pd.Series:
    """Rows whose value equals one of ``values`` (see _same); raises ValueError for text filters on a
    numeric column."""
    wanted = [_parse(v) for v in values]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        if any(isinstance(w, bool) or not isinstance(w, (int, float)) for w in wanted):
            raise ValueError(values)
    cells = column.map(_parse)
    return cells.map(lambda cell: any(_same(cell, w) for w in wanted)).astype(bool)


def apply_filters(runs: pd.DataFrame, filters: dict[str, list[str]]) -> pd.DataFrame:
    """Keep the runs whose column KEY equals one of the values (floats to REL_TOL, lists by element);
    raises KeyError (one line) for an unknown column or text values on a numeric one. A value that
    matches no run is named in one warning with the values there are (``init=lsuv,nosuch`` kept
    the lsuv runs and said nothing of the typo); filters that leave no run raise KeyError naming the
    first that emptied it and the values its column has among the runs the filters before it kept."""
    applied = []
    for key, values in filters.items():
        if key not in runs:
            raise KeyError(f"cannot filter on {key!r}; columns: {', '.join(runs.columns)}")
        present = ", ".join(sorted({str(v) for v in runs[key].dropna()}, key=_order)) or "no run has a value"
        try:
            unmatched = [v for v in values if not _matches(runs[key], [v]).any()]
            runs = runs[_matches(runs[key], values)]
        except ValueError as err:
            raise KeyError(f"{key} is numeric, got {', '.join(values)}") from err
        if runs.empty:
            among = f" with {' '.join(applied)}" if applied else ""
            raise KeyError(f"no run matches {key}={','.join(values)}; valid: the runs' {key}{among}: {present}")
        if unmatched:
            log.warning("filter %s=%s matches no run (the runs' %s: %s)", key, ",".join(unmatched), key, present)
        applied.append(f"{key}={','.join(values)}")
    return runs


def output_name(filters: dict[str, list[str]], limit: int = 100) -> str:
    """The default output folder's name: ``analysis``, or for a filtered analysis
    ``analysis_<key=values;...>`` (so it never replaces the whole sweep's), cut to ``limit``
    characters plus a hash of the whole where longer. Filters that match the same runs name the same
    folder: keys sorted, values written canonically (_canonical), sorted and once each."""
    if not filters:
        return "analysis"
    written = {key: sorted({_canonical(v) for v in values}, key=_order) for key, values in filters.items()}
    text = ";".join(f"{key}={','.join(values)}" for key, values in sorted(written.items()))
    name = re.sub(r"[^\w.=,;+-]+", "_", text)
    if len(name) > limit:
        name = name[:limit] + "_" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"analysis_{name}"


def _order(text: str):
    """Numbers by value, before text."""
    parsed = _parse(text)
    number = isinstance(parsed, (int, float)) and not isinstance(parsed, bool)
    return (0, parsed, "") if number else (1, 0, text)
