"""A multirun as a list of jobs: expansion, validation before any job runs, and job folder names.

``sweep_jobs`` expands the sweep exactly as Hydra's basic sweeper does (same parser, with the
config loader so ``glob(...)`` sees the config groups; same ``split_arguments``), so the list is
what the sweeper launches, whatever the syntax (``a,b``, ``range``, ``choice``, ``glob``, or
``hydra.sweeper.params`` from an experiment file). Other sweepers (Optuna, Nevergrad, ...) decide
their jobs while running: for them the list is unknown (``None``). For the Optuna sweeper,
``search_jobs`` stands in: the jobs at the corners of its search space, which validation composes
before any trial runs, and ``check_search`` checks that the jobs return what the study optimizes.

Importing this module registers the ``initlab_subdir`` resolver used by ``hydra.sweep.subdir``
and ``initlab_direction`` (an objective's direction, for hydra/sweeper=optuna_search).
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Optional

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.object_type import ObjectType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from omegaconf.nodes import BooleanNode

from initlab import objective
from initlab.config import SCHEMAS, TOP_LEVEL_KEYS, ConfigError, ExperimentConfig, refused_field, to_experiment
from initlab.data import check_sizes
from initlab.meta_checks import check_job_shapes
from initlab.train.job import check_threads
from initlab.models import check_config_fits
from initlab.names import NAME_MAX, fitted
from initlab.queue_check import device_refusal
from initlab.records import unwritable
from initlab.resume import check_folder

log = logging.getLogger("initlab.sweep")

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
MAX_CORNERS = 64  # search_jobs: beyond this many corner combinations, each parameter's extremes alone
MAX_GRID = 1024  # search_jobs: a grid sampler's grid up to this size is checked point by point


def job_subdir(override_dirname: str, limit: int = NAME_MAX) -> str:
    """The job folder name for ``hydra.job.override_dirname``: one path component, ``/`` written
    ``%2F`` and ``%`` ``%25`` (a path in a value, ``dataset.root=/data/x``, made nested folders),
    cut to ``limit`` bytes by ``initlab.names.fitted`` (the leading overrides that fit, ``_`` and a
    hash of the full string).

    Deterministic (a rerun finds the same folder) and distinct for distinct override strings up to
    the 48-bit hash. The full overrides stay in the job's ``.hydra/overrides.yaml``.
    """
    return fitted(override_dirname.replace("%", "%25").replace("/", "%2F"), limit)


if not OmegaConf.has_resolver("initlab_subdir"):
    OmegaConf.register_new_resolver("initlab_subdir", job_subdir)
if not OmegaConf.has_resolver("initlab_direction"):  # hydra/sweeper=optuna_search: the objective's direction
    OmegaConf.register_new_resolver("initlab_direction",
                                    lambda metric: None if metric is None else objective.direction(metric))


def sweep_jobs(config: DictConfig) -> Optional[list[list[str]]]:
    """Every job's overrides, in launch order, or None when the sweeper is not the basic one.

    ``config`` is the multirun's composed config (as given to ``on_multirun_start``).
    Raises Hydra's ``OverrideParseException`` for a sweep the basic sweeper could not parse either.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    sweeper = config.hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    arguments = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    arguments += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    batches = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)
    return [job for batch in batches for job in batch]


_HYDRA_JOB_KEYS = ("${hydra.job.override_dirname}", "${hydra.job.num}", "${hydra.job.name}", "${initlab_subdir:")


def job_folders(config: DictConfig, jobs: list[list[str]]) -> list[str]:
    """Each job's folder inside the sweep dir: ``hydra.sweep.subdir`` resolved as Hydra resolves it
    for that job (``hydra.job.num`` and ``override_dirname``: the job's overrides but the keys
    ``hydra.job.config.override_dirname.exclude_keys`` leaves out, sorted and joined). A subdir
    that reads other keys (``${seed}``, ``${hydra.runtime.choices.init}``) is resolved on the
    sweep's config with the job's values and choices set. Raises ValueError where a folder cannot
    be known before the job runs (``${hydra.job.id}``: the launcher assigns it; a key only a swept
    choice has)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname

    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create(config_loader=loader)
    template = subdir_template(config)
    reads_only_the_job = "${" not in _strip(template, _HYDRA_JOB_KEYS)
    if reads_only_the_job:
        root = OmegaConf.create({"hydra": OmegaConf.to_container(config.hydra, resolve=False)})
    else:  # typed, as the job's config is: init.factor=2 is 2.0 there, and Hydra's folder f2.0
        root = copy.deepcopy(config)
        OmegaConf.set_readonly(root, False)
    naming = config.hydra.job.config.override_dirname
    folders = []
    for num, overrides in enumerate(jobs):
        parsed = [o for o in parser.parse_overrides(list(overrides)) if not o.is_hydra_override()]
        job = root if reads_only_the_job else copy.deepcopy(root)
        try:
            if not reads_only_the_job:
                groups = [o for o in parsed if loader.repository.group_exists(o.key_or_group)]
                for o in groups:  # optimizer=sgd,adam with lr${optimizer.lr}: each choice's own lr, composed per job
                    group = o.key_or_group
                    if f"${{{group}." in template and o.value() != config.hydra.runtime.choices.get(group):
                        raise ValueError(f"it reads parameters of {group}, which the job's choice "
                                         f"{group}={o.value()} sets")
                    job.hydra.runtime.choices[o.key_or_group] = o.value()
                ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if o not in groups], job)
            job.hydra.job.num = num
            job.hydra.job.override_dirname = get_overrides_dirname(parsed, list(naming.exclude_keys),
                                                                   naming.item_sep, naming.kv_sep)
            folders.append(str(OmegaConf.select(job, "hydra.sweep.subdir", throw_on_missing=True)))
        except (OmegaConfBaseException, HydraException) as err:
            if unknown_interpolation(err):
                raise ConfigError(f"hydra.sweep.subdir={template}: {_one_line(err)}") from None
            raise ValueError(f"hydra.sweep.subdir={template} for job #{num}: {_one_line(err)}") from None
    return folders


def unknown_interpolation(err: BaseException) -> bool:
    """Whether ``err`` is an interpolation of a key no job's config can have (``${nope}``), not
    one only the launcher (``${hydra.job.id}``) or a swept choice (``${init.gain}``) resolves."""
    missing = re.search(r"Interpolation key '([^']+)' not found", str(err))
    return bool(missing) and missing.group(1).split(".")[0] not in (*TOP_LEVEL_KEYS, "hydra")


def subdir_template(config: DictConfig) -> str:
    """``hydra.sweep.subdir`` as written (unresolved), e.g. the default
    ``${initlab_subdir:${hydra.job.override_dirname}}``."""
    return str(OmegaConf.to_container(config.hydra.sweep, resolve=False)["subdir"])


def _strip(text: str, parts: tuple[str, ...]) -> str:
    for part in parts:
        text = text.replace(part, "")
    return text


def check_job_folders(config: DictConfig, jobs: list[list[str]]) -> Optional[list[str]]:
    """ConfigError (one line) where two jobs of the sweep would write one folder: settings that
    differ only in keys the folder name leaves out (the runtime keys threads, device, checkpoint,
    ...: ``hydra.job.config.override_dirname.exclude_keys``). Run side by side, they would append
    to the same files; run one after the other, the second would find the first's result. Where a
    folder cannot be known before its job runs (``job_folders``' ValueError) the check is left to
    the job folder's lock (initlab.records.lock_folder) and says so in the log. Returns the
    folders (``job_folders``), or None where they are not known."""
    try:
        folders = job_folders(config, jobs)
    except ConfigError:
        raise
    except ValueError as err:
        log.info("[sweep] job folders not checked before launch (%s); a running job's folder lock still refuses "
                 "a second job there", err)
        return None
    first: dict[str, int] = {}
    for num, folder in enumerate(folders):
        path = os.path.normpath(folder)  # r${dataset.root}: /data/ok and /data/x/../ok are one folder
        if path not in first:
            first[path] = num
            continue
        other = first[path]
        values = [dict(o.split("=", 1) if "=" in o else (o, "") for o in jobs[k]) for k in (other, num)]
        keys = sorted(k for k in values[0].keys() | values[1].keys() if values[0].get(k) != values[1].get(k))
        template = subdir_template(config)
        if not keys:
            why = "they are the same job"
        elif ("hydra.job.override_dirname" in template
              and set(config.hydra.job.config.override_dirname.exclude_keys).issuperset(keys)):
            why = (f"they differ only in {', '.join(keys)}, which the folder name leaves out "
                   f"(hydra.job.config.override_dirname.exclude_keys): sweep one value")
        else:
            why = (f"they differ only in {', '.join(keys)}, which hydra.sweep.subdir={template} leaves out: "
                   f"name the folders by them (the default, ${{initlab_subdir:${{hydra.job.override_dirname}}}}, does)")
        raise ConfigError(f"jobs #{other} ({' '.join(jobs[other])}) and #{num} ({' '.join(jobs[num])}) would write "
                          f"one folder, {folder}: {why}")
    return folders


def check_job_records(sweep_dir: Path, jobs: list[list[str]], folders: list[str],
                      experiments: list[ExperimentConfig]) -> None:
    """ConfigError (one line) naming the first job whose folder under ``sweep_dir`` cannot be
    created, is held by a running job, or holds the records of a run with other settings
    (initlab.resume.check_folder): before Hydra rewrites that folder's ``.hydra/`` for a job that
    would be refused there. A rerun of a sweep while some of its jobs still run is refused whole:
    wait for them, or sweep into another folder."""
    for overrides, folder, exp in zip(jobs, folders, experiments):
        try:
            refusal = unwritable("hydra.sweep.subdir", str(sweep_dir / folder))
            if refusal:
                raise ConfigError(refusal)
            check_folder(exp, sweep_dir / folder)
        except ConfigError as err:
            raise ConfigError(f"job {' '.join(overrides)}: {err}") from err


def is_search(config: DictConfig) -> bool:
    """Whether the multirun's sweeper is Optuna's (trials drawn while it runs, jobs return a value)."""
    return config.hydra.sweeper.get("_target_") == OPTUNA_SWEEPER


def sweeper_choice(config: DictConfig) -> str:
    """``hydra/sweeper=optuna_search``: the sweeper as the user chose it (a refusal named
    ``hydra/sweeper=optuna`` for a search launched with the optuna_search preset)."""
    return f"hydra/sweeper={OmegaConf.select(config, 'hydra.runtime.choices.hydra/sweeper', default=None) or 'optuna'}"


def check_search(config: DictConfig) -> None:
    """For hydra/sweeper=optuna: the jobs return ``objective`` and the study optimizes it in its
    direction (accuracies maximized, losses minimized); raises ConfigError (one line). Other
    sweepers: nothing to check.
    """
    if not is_search(config):
        return
    metric = config.get("objective")
    if metric is None:
        raise ConfigError(f"{sweeper_choice(config)} optimizes what each job returns: set objective="
                          "val_acc | val_loss | train_acc | train_loss (e.g. +experiment=he_factor_search)")
    wanted = objective.direction(metric)
    given = config.hydra.sweeper.get("direction")
    given = [given] if isinstance(given, str) or not OmegaConf.is_list(given) else list(given)
    given = [str(getattr(d, "name", d)) for d in given]
    if given != [wanted]:
        raise ConfigError(f"objective={objective.name(metric)} is to be {wanted}d, but hydra.sweeper.direction="
                          f"{','.join(given)}; set hydra.sweeper.direction={wanted}")
    _check_search_settings(config.hydra.sweeper)


def _check_search_settings(sweeper: DictConfig) -> None:
    """The sweeper's own numbers, which the plugin takes unchecked: n_trials 0 ended in Optuna's
    "No trials are completed yet" traceback, n_jobs 0 in a ZeroDivisionError, a negative sampler
    seed in an instantiation error, max_failure_rate 2 in a bare AssertionError; a database
    ``storage`` ended in an AssertionError deep in optuna 2.x's storage under SQLAlchemy 2."""
    checks = (("n_trials", 1, None, "an integer >= 1 (trials to run)"),
              ("n_jobs", 1, None, "an integer >= 1 (trials asked at once)"),
              ("max_failure_rate", 0, 1, "a number in [0, 1] (the fraction of failed trials tolerated)"),
              ("sampler.seed", 0, 2**32 - 1, "null or an integer in [0, 2**32 - 1] (numpy's seeds)"))
    for key, low, high, valid in checks:
        value = OmegaConf.select(sweeper, key, default=None)
        if value is None and key == "sampler.seed":
            continue
        integer = key != "max_failure_rate"
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int))
                or not math.isfinite(value) or value < low or (high is not None and value > high)):
            raise ConfigError(f"hydra.sweeper.{key}={value}; valid: {valid}")
    storage = sweeper.get("storage")
    if storage is not None:
        from importlib.metadata import version

        installed = {name: version(name) for name in ("optuna", "sqlalchemy")}
        if installed["optuna"].startswith("2.") and int(installed["sqlalchemy"].split(".")[0]) >= 2:
            raise ConfigError(f"hydra.sweeper.storage={storage}: optuna {installed['optuna']}'s database storage "
                              f"needs SQLAlchemy < 2, installed: {installed['sqlalchemy']} (its first write fails); "
                              "valid: null (the study in memory; analyze.py reads a search from its job folders)")


def search_jobs(config: DictConfig) -> Optional[list[list[str]]]:
    """Jobs at the corners of an Optuna search space, or None for other sweepers. Under the grid
    sampler (up to ``MAX_GRID`` points), every point of its grid: the trials themselves (a batch_size
    of range(5,12) leaving a last batch of one for a BatchNorm failed at its trial, inside the range).

    Otherwise each searched parameter takes its bounds (``interval``, ``range``: low and high) or every
    choice (``choice``, ``a,b``), with the sweep's fixed overrides; all combinations, or each
    parameter's extremes alone beyond ``MAX_CORNERS`` combinations. A trial's values lie between
    them, so a bound outside a field's valid range fails before the first trial. Raises
    ConfigError for a search space Optuna refuses (a log interval from 0 or below).
    """
    if not is_search(config):
        return None
    from optuna.distributions import CategoricalDistribution

    distributions, fixed = _search_space(config)
    fixed = [f"{k}={v}" for k, v in fixed.items() if k not in distributions]
    points = grid_size(config)
    if points is not None and points <= MAX_GRID:  # the grid sampler's trials are known: every one is checked
        from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

        values = {name: list(OptunaSweeperImpl._to_grid_sampler_choices(None, d)) for name, d in distributions.items()}
        return [fixed + [f"{name}={value}" for name, value in zip(values, combo)]
                for combo in itertools.product(*values.values())]
    extremes = {name: (list(d.choices) if isinstance(d, CategoricalDistribution) else [d.low, d.high])
                for name, d in distributions.items()}
    if math.prod(len(v) for v in extremes.values()) <= MAX_CORNERS:
        corners = [dict(zip(extremes, values)) for values in itertools.product(*extremes.values())]
    else:
        low = {name: values[0] for name, values in extremes.items()}
        corners = [{**low, name: value} for name, values in extremes.items() for value in values]
    return [fixed + [f"{name}={value}" for name, value in corner.items()] for corner in corners]


def _search_space(config: DictConfig) -> tuple[dict, dict]:
    """The Optuna sweeper's (distributions, fixed values) for ``config``'s sweeper params and task
    overrides, parsed by the plugin's own ``create_params_from_overrides``. Raises ConfigError for
    a search space Optuna refuses."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    sweeper = config.hydra.sweeper
    arguments = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    arguments += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    try:
        return create_params_from_overrides(arguments)
    except (HydraException, ValueError, NotImplementedError) as err:  # Optuna's checks of the bounds
        raise ConfigError(f"{sweeper_choice(config)} search space: {_one_line(err)}") from err


def trial_count(config: DictConfig) -> Optional[int]:
    """Trials an Optuna search of ``config`` runs: ``n_trials``, or with the grid sampler at most
    its grid's size (the plugin cuts n_trials to it); None for other sweepers. Raises ConfigError
    for a searched parameter the grid cannot list (``grid_size``)."""
    if not is_search(config):
        return None
    size = grid_size(config)
    n_trials = int(config.hydra.sweeper.n_trials)
    return n_trials if size is None else min(n_trials, size)


def grid_size(config: DictConfig) -> Optional[int]:
    """The number of points of an Optuna grid sampler's grid (every combination of the listed
    values, each distribution's points as the plugin lists them with its own
    ``_to_grid_sampler_choices``); None for another sampler or sweeper. Raises ConfigError for a
    searched parameter the grid cannot list (an interval: the plugin's ValueError traceback
    otherwise)."""
    if not is_search(config) or "GridSampler" not in str(config.hydra.sweeper.get("sampler", {}).get("_target_", "")):
        return None
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    points = 1
    for name, distribution in _search_space(config)[0].items():
        try:
            points *= len(OptunaSweeperImpl._to_grid_sampler_choices(None, distribution))
        except (ValueError, AssertionError) as err:
            raise ConfigError(f"hydra/sweeper/sampler=grid lists every value, but {name} is searched over an "
                              f"interval ({type(distribution).__name__}); valid: {name}=choice(a,b,...) or "
                              f"{name}=range(start,stop,step)") from err
    return points


def apply_searchpath(config_name: Optional[str], overrides: list[str]) -> None:
    """Make the initialized Hydra's repository search ``hydra.searchpath`` (a user's own config
    folders, given in ``overrides`` or in the primary config) as each of Hydra's compositions does
    for itself, so that the checks' lookups (a group's choices, a choice's file) see those folders
    too. Overrides Hydra cannot parse are left to Hydra's own message."""
    loader = GlobalHydra.instance().config_loader()
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return
    loader._process_config_searchpath(config_name, parsed, loader.repository)


def group_options(group: str) -> list[str]:
    """The choices of a config group, sorted, from the initialized Hydra's repository
    (``apply_searchpath``'s folders included). Hydra's ``ConfigLoader.get_group_options`` builds
    a new caching repository per call: about 0.05 s, which made checking a 288-job sweep's group
    choices take 20 s."""
    return GlobalHydra.instance().config_loader().repository.get_group_options(group, ObjectType.CONFIG)


def check_group_choices(overrides: list[str]) -> None:
    """ConfigError (one line) for an override that gives a config group anything but one of its
    choices: an unknown one, null, a list (Hydra would compose the choices into one config, the
    last winning) or a dict, or its removal (``~activation``); removing an optional group
    (``~experiment``), which only ``+`` adds, has nothing to remove. Sweeps (``init=a,b``) are left
    to each job; overrides Hydra cannot parse, to Hydra's own message. Needs Hydra initialized."""
    loader = GlobalHydra.instance().config_loader()
    try:
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(list(overrides))
    except HydraException:
        return
    for o in parsed:
        group = o.key_or_group
        if not group:  # ``=3``: Hydra reads the empty key as the config root's group
            raise ConfigError(f"{o.input_line}: no key before '='; valid: KEY=VALUE (a config key or group)")
        if o.is_sweep_override() or not loader.repository.group_exists(group):
            continue
        options = group_options(group)
        if o.is_delete() and group not in SCHEMAS:  # experiment, deep_plain: none unless added with +
            raise ConfigError(f"{o.input_line}: the {group} group is optional and left out unless added: drop "
                              f"{o.input_line}, or add one with +{group}=NAME; valid: {', '.join(options)}")
        if o.is_delete() or not isinstance(o.value(), str):
            raise ConfigError(f"{o.input_line}: the {group} group takes one choice; valid: {', '.join(options)}")
        if o.value() not in options:  # as Hydra's missing-file error reads after composing, for each job too
            raise ConfigError(f"unknown {group} {o.value()!r}; valid: {', '.join(options)}")


_GROUP_SYNTAX = (  # Hydra's words for a group override in the wrong form -> what the override should be
    (r"Multiple values for ([\w/]+)\.", "{group} is in the config's defaults already: choose with {group}={value}"),
    (r"force-add of config groups is not supported: '\+\+([\w/]+)=", "choose a group with {group}={value}"),
    (r"Could not override '([\w/]+)'\. No match in the defaults list",
     "{group} is not in the config's defaults: add it with +{group}={value}"),
)


def group_syntax(message: str, overrides: list[str]) -> Optional[str]:
    """One line for Hydra's refusal ``message`` of a config group given with the wrong prefix
    (``+activation=tanh``, ``++activation=tanh``, ``deep_plain=relu_he`` without ``+``): the form
    that works and the group's choices; None for other messages."""
    loader = GlobalHydra.instance().config_loader()
    for pattern, advice in _GROUP_SYNTAX:
        match = re.search(pattern, message)
        if match is None or not loader.repository.group_exists(match.group(1)):
            continue
        group = match.group(1)
        line = next((o for o in overrides if o.lstrip("+~").split("=", 1)[0] == group), group)
        value = line.split("=", 1)[1] if "=" in line else "CHOICE"
        return (f"{line}: {advice.format(group=group, value=value)}; valid: "
                f"{', '.join(group_options(group))}")
    return None


def validate_jobs(config: DictConfig, jobs: list[list[str]]) -> list[ExperimentConfig]:
    """Compose every job's config as the launcher will and validate it with ``to_experiment`` (and
    ``initlab.models.check_config_fits``: the model against the dataset's kind of data;
    ``initlab.data.check_sizes``: split sizes against a built-in or generated dataset, and a set
    read from disk loaded once where the jobs run on this machine (any launcher but SLURM's);
    ``initlab.meta_checks``: a batch of one sample against a BatchNorm, and tensors larger than
    this machine's memory, for each set loaded).

    Composing is Hydra's slow part (0.1-0.2 s a job), and in a grid most jobs share their config
    group choices: the groups are composed once per distinct choice (``load_sweep_config``), then
    each job's value overrides are applied to a copy, as Hydra applies them after composition
    (for ``+experiment=grid_quick``: 32 compositions for 288 jobs).
    Returns each job's experiment, in order. Raises ``ConfigError`` with one line naming the first
    bad job (its overrides) and the reason.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    apply_searchpath(config.hydra.job.config_name, list(config.hydra.overrides.hydra))
    files_here = not str(config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher")
    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create(config_loader=loader)
    composed: dict[tuple[str, ...], DictConfig] = {}
    experiments = []
    for overrides in jobs:
        try:
            check_group_choices(overrides)
            parsed = parser.parse_overrides(list(overrides))
            values = [o for o in parsed if not _selects_configs(loader, o)]
            groups = tuple(o.input_line for o in parsed if _selects_configs(loader, o))
            if groups not in composed:
                composed[groups] = _compose(loader, config, list(groups))
                check_file_bools(config.hydra.job.config_name, list(groups), composed[groups])
            job_cfg = copy.deepcopy(composed[groups])
            ConfigLoaderImpl._apply_overrides_to_config(values, job_cfg)
            check_bool_values(values, job_cfg)
            experiments.append(to_experiment(job_cfg))
            if refusal := device_refusal(experiments[-1].device.value, config.hydra.launcher):
                raise ConfigError(refusal)
            if files_here:  # a SLURM node's cores are its own
                check_threads(experiments[-1].threads)
            check_config_fits(experiments[-1])
            if (fitted_data := check_sizes(experiments[-1].dataset, files_here=files_here)) is not None:
                check_job_shapes(experiments[-1], fitted_data, here=files_here)
        except (ConfigError, HydraException, OmegaConfBaseException) as err:
            reason = group_syntax(f"{err} {err.__cause__ or ''}", list(overrides)) or _one_line(err)
            raise ConfigError(f"job {' '.join(overrides)}: {reason}") from err
    return experiments


def check_distinct_jobs(jobs: list[list[str]], experiments: list[ExperimentConfig]) -> None:
    """ConfigError (one line) where two jobs of a sweep are one run spelt two ways (``depth=2,02``,
    ``optimizer.lr=0.1,1e-1``): their folders differ, so both would train, and analyze.py would
    count the run twice (as two seeds, narrowing its interval). ``experiments``: validate_jobs'."""
    first: dict[str, int] = {}
    for num, exp in enumerate(experiments):
        other = first.setdefault(repr(exp), num)
        if other != num:
            why = "sweep each value once"
            if exp.model.FIXED_DEPTH is not None and set(jobs[other]) ^ set(jobs[num]) <= {
                    o for o in jobs[other] + jobs[num] if o.split("=", 1)[0] == "depth"}:
                why = (f"model={exp.model.name} is {exp.model.FIXED_DEPTH} layers deep whatever depth says: "
                       f"sweep it without depth")
            raise ConfigError(f"jobs #{other} ({' '.join(jobs[other])}) and #{num} ({' '.join(jobs[num])}) are the "
                              f"same run (equal configs): {why}")


def check_bool_values(overrides: list[Override], cfg: DictConfig) -> None:
    """ConfigError (one line) for a value override of a true/false field (``resume``,
    ``optimizer.nesterov``) that is neither: OmegaConf reads every integer as a bool
    (``optimizer.nesterov=2`` is true, ``=0`` false) and ``yes``, ``on``, ``y`` too, so a number
    meant for another key would pass silently. ``cfg``: the config the overrides were applied to."""
    repository = GlobalHydra.instance().config_loader().repository
    for o in overrides:
        if o.is_sweep_override() or o.is_delete() or o.is_hydra_override() or repository.group_exists(o.key_or_group):
            continue
        value = o.value()
        spelt = isinstance(value, str) and (value.lower() in ("true", "false") or "${" in value)  # 'true', ${x}
        if isinstance(value, bool) or spelt:
            continue
        parent_key, _, leaf = o.key_or_group.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
        if OmegaConf.is_dict(parent) and isinstance(parent._get_node(leaf, throw_on_missing_key=False), BooleanNode):
            raise ConfigError(f"{o.input_line}: not a bool; valid: true or false")


def check_file_bools(config_name: str, overrides: list[str], cfg: DictConfig) -> None:
    """ConfigError (one line) for a true/false field that a config file sets to anything else
    (``nesterov: 2``, ``resume: "on"`` in a user's ``--config-dir`` file): OmegaConf reads every
    integer and the strings ``yes``/``on`` as a bool on composing, so only the file itself still
    shows the value (``check_bool_values`` does the same for the command line; a bare ``yes`` is
    YAML 1.1's true already when the file is read). ``overrides``: those the
    config was composed with, ``hydra.searchpath`` among them; ``cfg``: the composed config
    (without ``hydra``). Hydra's own files are left to Hydra. Needs Hydra initialized."""
    from hydra.types import RunMode

    apply_searchpath(config_name, overrides)
    loader = GlobalHydra.instance().config_loader()
    for default in loader.compute_defaults_list(config_name, overrides, RunMode.RUN).defaults:
        if default.config_path is None or default.package.split(".")[0] == "hydra":
            continue
        loaded = loader.repository.load_config(default.config_path)
        if loaded is None or not OmegaConf.is_dict(loaded.config) or loaded.path.startswith("structured:"):
            continue
        for key, value in _raw_leaves(loaded.config):
            path = ".".join(part for part in (default.package, key) if part)
            parent_key, _, leaf = path.rpartition(".")
            parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
            if not (OmegaConf.is_dict(parent) and leaf in parent.keys()  # ~epochs: removed, left to to_experiment
                    and isinstance(parent._get_node(leaf), BooleanNode)):
                continue
            spelt = isinstance(value, str) and (value.lower() in ("true", "false", "???") or "${" in value)
            if not (isinstance(value, bool) or value is None or spelt):
                source = f"{loaded.path.removeprefix('file://')}/{default.config_path}.yaml"
                raise ConfigError(f"{source}: {key}: {value}: not a bool; valid: true or false")


def _raw_leaves(node: DictConfig, prefix: str = ""):
    """(dotted key, value as written) for every value of a config file, interpolations unresolved;
    Hydra's ``hydra`` key (an experiment's sweeper settings) left out."""
    for key in node.keys():
        dotted = f"{prefix}{key}"
        if dotted == "hydra":
            continue
        child = node._get_node(key)
        if OmegaConf.is_dict(child):
            yield from _raw_leaves(child, dotted + ".")
        elif not OmegaConf.is_list(child):
            yield dotted, child._value()


def _one_line(err: BaseException) -> str:
    """Hydra's and OmegaConf's messages span lines (key, type, hints): the first of each, joined,
    and what the field takes where OmegaConf refused a value by type (initlab.config.field_takes)."""
    lines = [str(e).strip().splitlines()[0].rstrip(".") for e in (err, err.__cause__)
             if e is not None and str(e).strip()]
    typed = next((e for e in (err, err.__cause__) if isinstance(e, OmegaConfBaseException)), None)
    line = ": ".join(lines) or type(err).__name__
    return refused_field(typed, line)[1] if typed is not None else line


def _selects_configs(loader: Any, override: Override) -> bool:
    """Whether Hydra composes this override into the defaults list (a config group, or hydra's)."""
    return override.is_hydra_override() or (
        not isinstance(override.value(), dict) and loader.repository.group_exists(override.key_or_group))


def _compose(loader: Any, config: DictConfig, groups: list[str]) -> DictConfig:
    """The job config (without ``hydra``) for these group choices, as the launcher composes it.

    ``${hydra:...}`` interpolations in it resolve against the sweep's own Hydra config.
    """
    cfg = loader.load_sweep_config(config, groups)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
