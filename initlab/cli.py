"""train.py's bad-input path: one ``error: ...`` line, exit status 2, nothing left behind.

Hydra reports its own composition errors (unknown key, unknown choice, badly typed value) in
several lines and exits with 1 from inside ``hydra.main``. For a single run (no ``-m``, no flags)
``check_single_run`` composes the config with Hydra's compose API first, with the same overrides,
and turns any composition error or ``ConfigError`` (a value out of range, a model that does not fit
the dataset's kind of data) into one line naming the key and what is valid;
only a config that passes reaches ``hydra.main``, so no run folder is created for bad input.

For a sweep (``-m``) Hydra first composes one base config from the overrides, sweep overrides left
out and config groups at their defaults, before any callback runs; ``check_multirun`` composes that
same config and turns its errors into one line too. The jobs themselves are checked afterwards by
the sweep callback (``initlab.sweeps.validate_jobs``).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, Node, OmegaConf, StringNode, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from initlab.config import (SCHEMAS, ConfigError, derived_note, refused_field, register_configs,
                            reject_unknown_top_level_keys, to_experiment, valid_names)
from initlab.models import check_config_fits
from initlab.queue_check import check_queue
from initlab.records import unwritable
from initlab.resume import check_folder
from initlab.sweeps import (apply_searchpath, check_bool_values, check_file_bools, check_group_choices, check_search,
                            grid_size, group_options, group_syntax, is_search, unknown_interpolation)

HYDRA_FILES = {".hydra"}  # with the job's log file, all a run folder holds before any training


Compose = Callable[[list[str]], DictConfig]  # overrides -> composed config (a run's, or a sweep's base)
MULTIRUN_FLAGS = {"-m", "--multirun"}
_ABSENT = object()


def check_command_line(args: Sequence[str], config_dir: Path, config_name: str = "config") -> Optional[str]:
    """The one-line error for ``python train.py ARGS`` (a run or a ``-m`` sweep), or None.

    Command lines with any other ``-`` flag (``--cfg``, ``--help``, ``-cn``, ...) are left to Hydra.
    """
    renamed = _name_override(args, config_dir)
    if renamed:
        return renamed
    flags = {arg for arg in args if arg.startswith("-")}
    if flags and flags <= MULTIRUN_FLAGS:
        return check_multirun([arg for arg in args if arg not in MULTIRUN_FLAGS], config_dir, config_name)
    return check_single_run(args, config_dir, config_name)


def _name_override(args: Sequence[str], config_dir: Path) -> Optional[str]:
    """A choice's ``name`` is fixed by its YAML file: overriding it (``init=lecun_normal
    init.name=he_normal``) would pair one choice's fields with another's code."""
    for arg in args:
        match = re.match(r"^[+~]*(\w+)\.name=(.*)$", arg)
        if match and match.group(1) in SCHEMAS:
            group, value = match.groups()
            choices = sorted(p.stem for p in (Path(config_dir) / group).glob("*.yaml"))
            known = all(part in choices for part in value.split(","))  # a sweep's choices too
            use = f"use {group}={value}" if known else f"use {group}=CHOICE; valid: {', '.join(choices)}"
            return f"{group}.name is set by the {group} choice, not overridden: {use}"
    return None


def check_multirun(overrides: Sequence[str], config_dir: Path, config_name: str = "config") -> Optional[str]:
    """The one-line error for ``python train.py -m OVERRIDES``' base config, or None when it composes.

    Hydra composes the base config with the overrides that are not sweeps and the config groups at
    their defaults (``init=he_normal``, not the swept inits); a parameter only the swept choices
    have (``init=orthogonal,xavier_normal init.gain=2``) fails there, and the line says to set it
    with ``++`` instead. Unknown top-level keys (``+epoch=3``), a glob that matches no choice of
    its group (no jobs), and an Optuna sweep whose jobs return no objective or one it would
    optimize the wrong way (``initlab.sweeps.check_search``) are refused too.
    """
    register_configs()
    args = list(overrides)
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        app = GlobalHydra.instance().hydra
        apply_searchpath(config_name, args)

        def compose_base(args: list[str]) -> DictConfig:
            return app.compose_config(config_name, args, run_mode=RunMode.MULTIRUN, with_log_configuration=False)

        try:
            check_group_choices(args)
        except ConfigError as err:
            return str(err)
        if dropped := _dropped_sweep(args):
            return dropped
        try:
            base = compose_base(args)
        except (ConfigCompositionException, OverrideParseException) as err:
            return _composition_message(err, args, compose_base, swept=_swept_groups(args))
        try:
            reject_unknown_top_level_keys(base)  # +epoch=3: in every job; group parameters are per job
            check_search(base)  # hydra/sweeper=optuna: the jobs return the objective it optimizes
            if is_search(base) and (fixed := _fixed_and_searched(args)):
                return fixed
            grid_size(base)  # its grid sampler lists every searched value
        except ConfigError as err:
            return str(err)
        members = OmegaConf.select(base, "hydra.launcher.max_members", default=None)
        if members is not None and members < 1:  # the batched launchers (hydra_plugins/initlab_batched_launcher)
            return f"hydra.launcher.max_members={members}; valid: null (automatic from free memory) or an integer >= 1"
        sweep_dir, refusal = _folder(base, "hydra.sweep.dir")
        refusal = (refusal or _joblib_workers(base) or check_queue(base.hydra.launcher)
                   or unwritable("hydra.sweep.dir", sweep_dir))
        if refusal:
            return refusal
        return (_unknown_swept_key(args, base, compose_base) or _swept_choice_lacks(args, compose_base)
                or _empty_glob(args))


def _folder(cfg: DictConfig, key: str) -> tuple[Optional[str], Optional[str]]:
    """(the folder ``key`` resolves to, or None where only the running job can resolve it; a
    one-line refusal where it reads a key no config has, ``hydra.run.dir=${nope}/x``, or is empty)."""
    try:
        folder = OmegaConf.select(cfg, key)
        if folder is not None and not str(folder).strip():  # hydra.run.dir='': records in the working dir
            return None, f"{key}='{folder}': an empty folder would be the working directory; valid: a folder path"
        return folder, None
    except OmegaConfBaseException as err:
        if not unknown_interpolation(err):
            return None, None
        *parent, leaf = key.split(".")
        written = OmegaConf.to_container(OmegaConf.select(cfg, ".".join(parent)), resolve=False)[leaf]
        return None, f"{key}={written}: {_first_line(getattr(err, 'msg', str(err)))}"


def _joblib_workers(base: DictConfig) -> Optional[str]:
    """The joblib launchers' ``n_jobs`` (parallel, batched_parallel; ``INITLAB_N_JOBS`` by default):
    0, or a value that is no integer, would fail inside joblib once the sweep has started."""
    launcher = base.hydra.launcher
    if "n_jobs" not in launcher:
        return None
    valid = "valid: an integer other than 0 (joblib's n_jobs: k workers, -1 one per core; INITLAB_N_JOBS sets it)"
    try:
        n_jobs = launcher.n_jobs
    except OmegaConfBaseException as err:
        written = OmegaConf.to_container(launcher, resolve=False)["n_jobs"]
        return f"hydra.launcher.n_jobs={written}: {_first_line(getattr(err, 'msg', str(err)))}; {valid}"
    return f"hydra.launcher.n_jobs={n_jobs}; {valid}" if n_jobs == 0 else None


def _unknown_swept_key(args: list[str], base: DictConfig, compose_base: Compose) -> Optional[str]:
    """``foo=1,2`` or ``init.factr=1,2``: a swept key that no job can have (the base config composes
    without sweep overrides). Keys of swept groups are left to the per-job check."""
    loader = GlobalHydra.instance().config_loader()
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(args)
    swept = _swept_groups(args)
    for o in parsed:
        key = o.key_or_group
        if (not o.is_sweep_override() or o.is_hydra_override() or o.is_add() or o.is_force_add()
                or loader.repository.group_exists(key) or key.split(".")[0] in swept):
            continue
        if OmegaConf.select(base, key, default=_ABSENT) is _ABSENT:
            probe = [a for a in args if a != o.input_line] + [f"{key}=0"]  # any value: the key is what fails
            try:
                compose_base(probe)
            except (ConfigCompositionException, OverrideParseException) as err:
                return _composition_message(err, probe, compose_base)
    return None


def _swept_choice_lacks(args: list[str], compose_base: Compose) -> Optional[str]:
    """``init=he_normal,orthogonal init.factor=1``: the base config (init=he_normal) has the
    parameter, so it composes, but a swept choice lacks it, and its jobs failed in Hydra's words
    (``Key 'factor' not in 'GainConfig'``). The base config composed with that choice instead gives
    the refusal of the other order (``init=orthogonal,he_normal init.gain=2``, where the base choice
    lacks it): the same line, with the same advice."""
    parsed = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader()).parse_overrides(args)
    swept = _swept_groups(args)
    for o in parsed:
        group, _, key = o.key_or_group.partition(".")
        if o.is_sweep_override() or o.is_delete() or group not in swept or not key or "." in key:
            continue
        lacking = _choices_without(group, key, args)
        if not lacking:
            continue
        sweep = next(p for p in parsed if p.key_or_group == group and p.is_sweep_override())
        probe = [a for a in args if a not in (sweep.input_line, o.input_line)]
        probe += [f"{group}={lacking[0]}", o.input_line.lstrip("+")]  # ++init.factor=1: refused as init.factor=1
        try:
            compose_base(probe)
        except (ConfigCompositionException, OverrideParseException) as err:
            line = _composition_message(err, probe, compose_base)
            choices = list(dict.fromkeys(sweep.sweep_string_iterator()))
            if len(lacking) < len(choices):  # where no swept choice has it, there is nothing to sweep apart
                line += f" ({_swept_advice(group, key, o.input_line.split('=', 1)[0], lacking)})"
            return line
    return None


def _dropped_sweep(args: list[str]) -> Optional[str]:
    """``epochs=1,2 epochs=3``: Hydra's sweeper keeps a key's last override, so a sweep followed by
    another override of its key would silently become one value (every job run once, not per value)."""
    try:
        parsed = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader()).parse_overrides(args)
    except HydraException:
        return None  # Hydra's own line names the syntax error
    for k, override in enumerate(parsed):  # the key without its +, ++ or ~ (get_key_element keeps them)
        key = (override.key_or_group, override.package)
        later = [o for o in parsed[k + 1:] if (o.key_or_group, o.package) == key]
        if override.is_sweep_override() and later:
            return (f"{override.input_line} is overridden by the later {later[-1].input_line} (Hydra keeps a key's "
                    f"last override), which would drop the sweep's values; valid: one override per swept key")
    return None


def _fixed_and_searched(args: list[str]) -> Optional[str]:
    """``model.width=8 model.width=range(4,64)`` under the Optuna sweeper: it drops from the search
    space every key that also has a fixed value, whatever their order (hydra-optuna-sweeper's
    ``sweep``), so the trials all ran width 8 and the log said "Best parameters: {}". (The other
    order is ``_dropped_sweep``'s.)"""
    parsed = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader()).parse_overrides(args)
    for k, override in enumerate(parsed):
        key = (override.key_or_group, override.package)
        earlier = [o for o in parsed[:k] if (o.key_or_group, o.package) == key and not o.is_sweep_override()]
        if override.is_sweep_override() and earlier:
            return (f"{earlier[-1].input_line} fixes the key that the later {override.input_line} searches, and the "
                    f"Optuna sweeper keeps a fixed value and drops the search over it; valid: one override per "
                    f"searched key")
    return None


def _swept_groups(args: list[str]) -> frozenset[str]:
    """The config groups that ``args`` sweep (``init=he_normal,orthogonal``, ``init=glob(he_*)``)."""
    loader = GlobalHydra.instance().config_loader()
    try:
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(args)
    except HydraException:
        return frozenset()
    return frozenset(o.key_or_group for o in parsed
                     if o.is_sweep_override() and loader.repository.group_exists(o.key_or_group))


def _empty_glob(args: list[str]) -> Optional[str]:
    """``activation=glob(zz*)`` would launch no job at all: name the group's choices instead."""
    loader = GlobalHydra.instance().config_loader()
    for override in OverridesParser.create(config_loader=loader).parse_overrides(args):
        if override.is_discrete_sweep() and loader.repository.group_exists(override.key_or_group):
            if not list(override.sweep_string_iterator()):
                group = override.key_or_group
                return (f"{override.input_line} matches no {group}; valid: "
                        f"{', '.join(group_options(group))}")
    return None


def check_single_run(args: Sequence[str], config_dir: Path, config_name: str = "config") -> Optional[str]:
    """The one-line error for ``python train.py ARGS``, or None when the config is valid.

    Only plain overrides are checked (any ``-`` flag, e.g. ``-m`` or ``--cfg``, is left to Hydra).
    ``hydra.run.dir``, where it resolves here, is checked too: a folder held by a running job, or
    finished or checkpointed with other settings (initlab.resume.check_folder), or one that
    cannot be created, refuses the run before Hydra rewrites its ``.hydra/``.
    """
    if any(arg.startswith("-") for arg in args):
        return None
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        apply_searchpath(config_name, list(args))
        try:
            check_group_choices(args)
        except ConfigError as err:
            return str(err)
        try:
            cfg = compose(config_name, overrides=list(args), return_hydra_config=True)
        except (ConfigCompositionException, OverrideParseException) as err:
            return _composition_message(err, list(args), lambda rest: compose(config_name, overrides=rest))
        run_dir, refusal = _folder(cfg, "hydra.run.dir")
        if refusal:
            return refusal
        with open_dict(cfg):
            del cfg["hydra"]
        loader = GlobalHydra.instance().config_loader()
        try:
            check_bool_values(OverridesParser.create(config_loader=loader).parse_overrides(list(args)), cfg)
            check_file_bools(config_name, list(args), cfg)
            exp = to_experiment(cfg)
            check_config_fits(exp)
            if run_dir is not None:  # a folder named by the job itself (${hydra.job.id}) is left to the job
                check_folder(exp, Path(run_dir))
            folder = unwritable("hydra.run.dir", run_dir)
            if folder:
                return folder
        except ConfigError as err:
            return str(err)
        except OmegaConfBaseException as err:  # resolving a value: optimizer.lr=${foo}, ${oc.env:UNSET}
            key = err.full_key or "?"
            reason = _first_line(getattr(err, 'msg', str(err)))
            return f"{_override_of(key, args, reason)}: {reason}"
    return None


def _composition_message(err: Exception, args: list[str], compose_rest: Compose,
                         swept: frozenset[str] = frozenset()) -> str:
    """One line for a Hydra composition error, naming the key and the valid keys or values.

    ``compose_rest`` composes the config without the bad override (to name a group's choice);
    ``swept`` are the config groups a sweep sweeps (their parameters are checked per job).
    """
    cause = err.__cause__
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, choice = err.missing_cfg_file.rsplit("/", 1)
        options = err.options or group_options(group)
        return f"unknown {group} {choice!r}; valid: {', '.join(options)}"
    if isinstance(err, OverrideParseException):
        lines = str(err).splitlines()
        return ": ".join(lines[:2])
    appended = re.search(r"Could not append to config\. An item is already at '([^']+)'", f"{err} {cause or ''}")
    if appended:  # +depth=3: the key exists; + only adds new ones
        key = appended.group(1)
        arg = next((a for a in reversed(args) if a.startswith("+") and a.lstrip("+").split("=", 1)[0] == key), key)
        value = arg.split("=", 1)[1] if "=" in arg else "VALUE"
        return f"{arg}: {key} is in the config already; valid: {key}={value} (or ++{key}={value})"
    ambiguous = re.match(r"Ambiguous value for argument '(.+)'", str(err))
    if ambiguous:  # Hydra's three hints, in one line
        arg = ambiguous.group(1)
        key, _, values = arg.partition("=")
        sweep = f"a sweep with -m (python train.py -m {arg})"
        if GlobalHydra.instance().config_loader().repository.group_exists(key.lstrip("+~")):
            return f"{arg}: several choices; valid: {sweep}, or one choice"
        node = _field_node(compose_rest, [a for a in args if a != arg], key.lstrip("+~"))
        forms = ([f"a list {key}=[{values}]"] if isinstance(node, ListConfig) and "[" not in values else []) + (
            [f"a string {key}='{values}'"] if isinstance(node, StringNode) else [])
        return f"{arg}: several values; valid: {', '.join([sweep, *forms[:-1]])}{f', or {forms[-1]}' if forms else ''}"
    deleted = re.match(r"Could not delete from config\. '([^']+)' does not exist", str(err))
    if deleted:
        return _missing_delete_message(deleted.group(1), args, compose_rest)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
        return _unknown_key_message(cause, args, compose_rest, swept)
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        key, reason = refused_field(cause, _first_line(getattr(cause, "msg", str(cause))))
        return f"{_override_of(key, args, reason)}: {reason}"
    in_file = re.match(r"In '([^']+)': \w+ raised while composing config:\n(.+?)\n\s*full_key: (\S+)", str(err), re.S)
    if in_file and cause is None:  # a config file's key: Hydra puts OmegaConf's error in its own text
        return _file_key_message(str(err), *in_file.groups())
    return (group_syntax(f"{err} {cause or ''}", args)
            or " ".join(_first_line(str(e)) for e in (err, cause) if e is not None))


def _field_node(compose_rest: Compose, args: list[str], key: str) -> Optional[Node]:
    """The typed node of ``key`` in the config ``args`` compose (a ListConfig, StringNode, EnumNode,
    IntegerNode, ...), or None where it does not compose or has no such key: which forms of several
    values the field takes (depth=[5,18] and depth='5,18' were offered for an int; threads='1,2',
    checkpoint='last,best' for an Optional[int] and a choice)."""
    try:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(compose_rest(args), parent) if parent else compose_rest(args)
        return node._get_node(leaf) if isinstance(node, DictConfig) else None
    except (ConfigCompositionException, OverrideParseException, OmegaConfBaseException):
        return None


def _override_of(key: str, args: list[str], reason: str) -> str:
    """The override of ``key`` that an error is about: the one whose value the reason quotes (Hydra
    applies overrides in order and stops at the first bad one: ``epochs=abc epochs=1`` was reported
    as epochs=1), or the deletion a "does not support deletion" is about; else the last, which wins."""
    mine = [a for a in args if a.lstrip("+~").split("=", 1)[0] == key]
    quoted = [a for a in mine if "=" in a and f"'{a.split('=', 1)[1]}'" in reason]
    deleting = [a for a in mine if a.startswith("~")] if "deletion" in reason else []  # ~init.factor init.factor=2
    return (quoted or deleting or mine[-1:] or [key])[0]


def _file_key_message(text: str, config: str, reason: str, key: str) -> str:
    """``experiment/he_factor.yaml sets dataset.mean: Key 'mean' not in 'DigitsConfig'; valid keys of
    dataset: ...`` for a key a config file sets that the composed schema refuses (a preset written
    for another dataset); Hydra's own text ended with 'raised while composing config:'."""
    line = f"{config}.yaml sets {key}: {_first_line(reason)}"
    named = re.search(r"object_type=(\w+)", text)
    schema = next((c for choices in SCHEMAS.values() for c in choices.values()
                   if named is not None and c.__name__ == named.group(1)), None)
    if schema is not None and "." in key and " not in " in reason:
        line += f"; valid keys of {key.rsplit('.', 1)[0]}: {', '.join(sorted(f.name for f in fields(schema)))}"
    return line


def _unknown_key_message(cause: OmegaConfBaseException, args: list[str], compose_rest: Compose,
                         swept: frozenset[str]) -> str:
    """``init.factr=1`` -> ``unknown init parameter(s) factr for init=he_normal; valid: factor, mode``."""
    *parent, key = cause.full_key.split(".")
    kind = cause.object_type
    valid = sorted(f.name for f in fields(kind)) if is_dataclass(kind) else []
    deleted = [a for a in args if a.startswith("~") and a[1:].split("=", 1)[0] == cause.full_key]
    if deleted and key in valid:  # ~depth=5 depth=5 said "unknown key depth; valid: ..., depth, ..."
        setting = [a for a in args if not a.startswith("~") and a.lstrip("+").split("=", 1)[0] == cause.full_key]
        return f"{setting[-1]} sets the key that {deleted[0]} removes before it; valid: one of the two"
    if len(parent) == 1 and "name" in valid:  # a config group's choice: name the choice
        rest = [a for a in args if a.lstrip("+~").split("=", 1)[0] != cause.full_key]
        choice = _choice_named(parent[0], rest, compose_rest)
        valid.remove("name")
        derived = [derived_note(k, [key]) for k in (kind, *SCHEMAS[parent[0]].values())]  # a swept choice's too
        line = (f"unknown {parent[0]} parameter(s) {key} for {parent[0]}={choice}; "
                + valid_names(valid, f"{parent[0]}={choice} takes no parameters")  # logger=none
                + next((note for note in derived if note), ""))
        if parent[0] in swept and any(key in {f.name for f in fields(k)} for k in SCHEMAS[parent[0]].values()):
            lacking = _choices_without(parent[0], key, rest)
            line += (f" (Hydra composes a sweep's base config with {parent[0]}={choice}, not the swept ones: "
                     + (f"set a parameter of the swept choices with ++{cause.full_key}=...)" if not lacking else
                        f"{_swept_advice(parent[0], key, f'++{cause.full_key}', lacking)})"))
        return line
    where = f"keys of {'.'.join(parent)}" if parent else "top-level keys"
    owner = ".".join(parent) or "the config"
    node = cause.parent_node
    if not is_dataclass(kind) and isinstance(node, DictConfig):  # a dict (hydra.job_logging): its keys, and +
        arg = next((a for a in args if a.lstrip("+~").split("=", 1)[0].startswith(cause.full_key)), None)
        add = f"+{arg.lstrip('+~')}" if arg and "=" in arg else f"+{cause.full_key}=VALUE"
        held = valid_names([str(k) for k in node.keys()], f"{owner} has no keys yet", where)
        return f"unknown key {cause.full_key}; {held}; add a new one with {add}"
    return f"unknown key {cause.full_key}; {valid_names(valid, f'{owner} takes no keys', f'valid {where}')}"


def _choice_named(group: str, args: list[str], compose_rest: Compose) -> str:
    """The choice of ``group`` that ``args`` compose; where another override is bad too
    (``init=orthogonal init.factr=1 foo=1``), the one that ``args``' own choice of the group (or
    the default) composes; "?" if neither composes."""
    mine = [a for a in args if a.lstrip("+~").split("=", 1)[0] == group]
    for attempt in (args, mine):
        try:
            return str(compose_rest(attempt)[group].name)
        except (ConfigCompositionException, OverrideParseException):
            continue
    return "?"


def _swept_advice(group: str, key: str, written: str, lacking: list[str]) -> str:
    """``WRITTEN=... sets it on every swept choice, but init=zero has no gain (its jobs would be
    refused): sweep it separately``, whichever of the base choice and the ``lacking`` ones has the key."""
    return (f"{written}=... sets it on every swept choice, but {', '.join(f'{group}={c}' for c in lacking)} "
            + (f"has no {key} (its jobs" if len(lacking) == 1 else f"have no {key} (their jobs")
            + f" would be refused): sweep {'it' if len(lacking) == 1 else 'them'} separately")


def _choices_without(group: str, key: str, args: list[str]) -> list[str]:
    """The choices ``args`` sweep ``group`` over (``init=he_normal,orthogonal``) whose config has no
    ``key``: a ``++group.key=...`` override would be refused in their jobs."""
    parsed = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader()).parse_overrides(args)
    swept = [c for o in parsed if o.key_or_group == group and o.is_discrete_sweep() for c in o.sweep_string_iterator()]
    lacking = []
    for c in dict.fromkeys(swept):
        loaded = GlobalHydra.instance().config_loader().repository.load_config(f"{group}/{c}")
        if loaded is None:
            continue
        paths = [str(getattr(d, "path", "")) for d in loaded.defaults_list or []]  # /schema/init/variance_scaling
        schema = next((SCHEMAS[group][p.rsplit("/", 1)[1]] for p in paths
                       if p.startswith(f"/schema/{group}/") and p.rsplit("/", 1)[1] in SCHEMAS[group]), None)
        if schema is not None and key not in {f.name for f in fields(schema)}:
            lacking.append(c)
    return lacking


def _missing_delete_message(key: str, args: list[str], compose_rest: Compose) -> str:
    """``~foo`` or ``~init.factr`` names no key: say so and list the keys there are to delete."""
    *parent, _ = key.split(".")
    rest = [a for a in args if a.lstrip("~").split("=", 1)[0] != key]
    try:
        node = OmegaConf.select(compose_rest(rest), ".".join(parent)) if parent else compose_rest(rest)
    except (ConfigCompositionException, OverrideParseException):  # another override is bad too
        node = None
    where = f"keys of {'.'.join(parent)}" if parent else "top-level keys"
    keys = sorted(k for k in node.keys() if k != "hydra") if OmegaConf.is_dict(node) else []
    return f"~{key}: no such key to delete; {where}: {', '.join(keys) or '?'}"


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
