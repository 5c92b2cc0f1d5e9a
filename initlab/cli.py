"""train.py's bad-input path: one ``error: ...`` line, exit status 2, nothing left behind.

Hydra reports its own composition errors (unknown key, unknown choice, badly typed value) in
several lines and exits with 1 from inside ``hydra.main``. For a single run (no ``-m``, no flags)
``check_single_run`` composes the config with Hydra's compose API first, with the same overrides,
and turns any composition error or ``ConfigError`` into one line naming the key and what is valid;
only a config that passes reaches ``hydra.main``, so no run folder is created for bad input.
"""

from __future__ import annotations

import shutil
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from initlab.config import ConfigError, register_configs, to_experiment

HYDRA_FILES = {".hydra"}  # with the job's log file, all a run folder holds before any training


def check_single_run(args: Sequence[str], config_dir: Path, config_name: str = "config") -> Optional[str]:
    """The one-line error for ``python train.py ARGS``, or None when the config is valid.

    Only plain overrides are checked (any ``-`` flag, e.g. ``-m`` or ``--cfg``, is left to Hydra).
    """
    if any(arg.startswith("-") for arg in args):
        return None
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        try:
            cfg = compose(config_name, overrides=list(args), return_hydra_config=True)
        except (ConfigCompositionException, OverrideParseException) as err:
            return _composition_message(err, list(args), config_name)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            to_experiment(cfg)
        except ConfigError as err:
            return str(err)
    return None


def _composition_message(err: Exception, args: list[str], config_name: str) -> str:
    """One line for a Hydra composition error, naming the key and the valid keys or values."""
    cause = err.__cause__
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, choice = err.missing_cfg_file.rsplit("/", 1)
        options = err.options or GlobalHydra.instance().config_loader().get_group_options(group)
        return f"unknown {group} {choice!r}; valid: {', '.join(options)}"
    if isinstance(err, OverrideParseException):
        lines = str(err).splitlines()
        return ": ".join(lines[:2])
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
        return _unknown_key_message(cause, args, config_name)
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        override = next((a for a in args if a.lstrip("+~").split("=", 1)[0] == cause.full_key), cause.full_key)
        return f"{override}: {_first_line(getattr(cause, 'msg', str(cause)))}"
    return " ".join(_first_line(str(e)) for e in (err, cause) if e is not None)


def _unknown_key_message(cause: OmegaConfBaseException, args: list[str], config_name: str) -> str:
    """``init.factr=1`` -> ``unknown init parameter(s) factr for init=he_normal; valid: factor, mode``."""
    *parent, key = cause.full_key.split(".")
    kind = cause.object_type
    valid = sorted(f.name for f in fields(kind)) if is_dataclass(kind) else []
    if len(parent) == 1 and "name" in valid:  # a config group's choice: name the choice
        rest = [a for a in args if a.lstrip("+~").split("=", 1)[0] != cause.full_key]
        try:
            choice = compose(config_name, overrides=rest)[parent[0]].name
        except (ConfigCompositionException, OverrideParseException):  # another override is bad too
            choice = "?"
        valid.remove("name")
        return f"unknown {parent[0]} parameter(s) {key} for {parent[0]}={choice}; valid: {', '.join(valid)}"
    where = f"keys of {'.'.join(parent)}" if parent else "top-level keys"
    return f"unknown key {cause.full_key}; valid {where}: {', '.join(valid)}"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def remove_stub_run_dir(output_dir: Path, log_name: str) -> bool:
    """Delete a run folder that holds nothing but Hydra's ``.hydra`` and the job's log (bad input).

    Empty folders above it inside the working directory (``outputs/runs/``) go too. Returns whether
    it was removed; a folder with anything else (records, a checkpoint) is kept.
    """
    output_dir = Path(output_dir).resolve()
    if not output_dir.is_dir():
        return False
    if not {p.name for p in output_dir.iterdir()} <= HYDRA_FILES | {log_name}:
        return False
    shutil.rmtree(output_dir)
    cwd = Path.cwd().resolve()
    parent = output_dir.parent
    while cwd in parent.parents and not any(parent.iterdir()):  # e.g. an outputs/runs/ made for this run
        parent.rmdir()
        parent = parent.parent
    return True
