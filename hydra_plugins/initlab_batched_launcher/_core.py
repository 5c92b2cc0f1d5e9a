"""What the batched launchers share: compose the jobs, group them, run a group as Hydra runs a job.

A group of one runs through Hydra's own ``run_job`` (the task function, exactly as the basic
launcher). A larger group is Hydra's ``run_job`` split in two around one call of
``initlab.ensemble.run_group``: every member gets its folder, ``.hydra/`` files and
``on_job_start`` first, then the ensemble trains, then every member gets its ``JobReturn`` and
``on_job_end`` (so initlab's sweep ledger counts it). The job's log file: records that belong to
one member (``initlab.joblog``) go to that member's log only, the others to every member's log.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (JobReturn, JobRuntime, JobStatus, _flush_loggers, _save_config, configure_log,
                              env_override, filter_overrides, run_job, setup_globals)
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger("initlab.batched")

SWEEP_DIR, SWEEP_SUBDIR = "hydra.sweep.dir", "hydra.sweep.subdir"


def ensemble() -> Any:
    """``initlab.ensemble`` (plan, run_group, unbatchable), imported when a sweep launches."""
    import initlab.ensemble as module

    return module


def prepare(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
            job_id: Callable[[DictConfig, int], Any]) -> tuple[list[DictConfig], list[list[int]]]:
    """Every job's composed config (``hydra.job.id``/``num`` set as the wrapped launcher sets them)
    and the groups, as index lists into it; logs the grouping."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    configs = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = job_id(cfg, idx)
            cfg.hydra.job.num = idx
        configs.append(cfg)
    return configs, plan_groups(configs, launcher.max_members)


def _task_config(config: DictConfig) -> DictConfig:
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def _folder(config: DictConfig) -> str:
    """The job's folder: the sweep's dir joined with its subdir, absolute."""
    return os.path.abspath(os.path.join(str(OmegaConf.select(config, SWEEP_DIR)),
                                        str(OmegaConf.select(config, SWEEP_SUBDIR))))


def plan_groups(configs: Sequence[DictConfig], max_members: Optional[int]) -> list[list[int]]:
    """``initlab.ensemble.plan`` over the jobs' configs, with every job that must have its own
    process (``hydra.job.chdir``) alone, groups split where ``hydra.job.env_set`` differs, and a
    job whose folder an earlier job already has alone after it: it then finds that job's result and
    is skipped. (The basic sweeper's sweeps with such twins are refused before they launch,
    initlab.sweeps.check_job_folders; a sweeper deciding its jobs while it runs, such as Optuna's
    from categorical choices, can draw one setting twice.)"""
    ens = ensemble()
    tasks = [_task_config(c) for c in configs]
    planned = ens.plan(tasks, max_members)
    folders = [_folder(c) for c in configs]
    first = {folder: i for i, folder in reversed(list(enumerate(folders)))}
    twins = {i: first[folder] for i, folder in enumerate(folders) if first[folder] != i}
    groups: list[list[int]] = []
    for group in planned:
        split: dict[str, list[int]] = {}
        for i in group:
            if configs[i].hydra.job.chdir or i in twins:
                groups.append([i])
            else:
                split.setdefault(OmegaConf.to_yaml(configs[i].hydra.job.env_set), []).append(i)
        groups.extend(split.values())
    groups.sort(key=lambda g: g[0])
    _log_groups(configs, tasks, groups, max_members, ens, twins)
    return groups


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless n is 1: "1 group", "2 jobs" (the log read "1 groups")."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _log_groups(configs: Sequence[DictConfig], tasks: Sequence[DictConfig], groups: list[list[int]],
                max_members: Optional[int], ens: Any, twins: dict[int, int]) -> None:
    from initlab.config import ConfigError, to_experiment

    sizes = [len(g) for g in groups]  # in the order the groups are listed below and run
    log.info("[batched] %s in %s (max_members=%s; sizes %s)", counted(len(configs), "job"), counted(len(groups), "group"),
             "auto" if max_members is None else max_members, " ".join(map(str, sizes)))
    for number, group in enumerate(groups, start=1):
        jobs = " ".join(f"#{configs[i].hydra.job.num}" for i in group)
        if len(group) > 1:
            log.info("[batched] group %d: %d jobs %s", number, len(group), jobs)
            continue
        i = group[0]
        if i in twins:
            why = (f"its folder is job #{configs[twins[i]].hydra.job.num}'s "
                   f"(the same job but for keys its folder name leaves out)")
        elif configs[i].hydra.job.chdir:
            why = "hydra.job.chdir=true (a job that changes into its folder needs a process of its own)"
        else:
            try:
                why = ens.unbatchable(to_experiment(tasks[i]))
            except ConfigError as err:
                why = f"bad config ({err})"
            if why is None:
                key = ens.group_key(tasks[i])
                peers = sum(j != i and j not in twins and ens.group_key(tasks[j]) == key for j in range(len(tasks)))
                limit = (f"max_members={max_members}" if max_members is not None
                         else "max_members=auto (the members free memory holds)")
                again = " ".join(f"#{configs[j].hydra.job.num}" for j, first in twins.items() if first == i)
                why = (f"left over where the {peers + 1} jobs that share its model, data and schedule split into "
                       f"groups of {limit}" if peers else
                       f"the only other jobs with its model, data and schedule are itself again ({again}, its folder)"
                       if again else "no other job shares its model, data and schedule")
        log.info("[batched] group %d: job %s alone: %s", number, jobs, why)
    for cfg in configs:
        log.info("\t#%s : %s", cfg.hydra.job.num, " ".join(filter_overrides(cfg.hydra.overrides.task)))


def in_job_order(groups: list[list[int]], results: Sequence[Sequence[JobReturn]]) -> list[JobReturn]:
    """The groups' JobReturns in the order of the jobs (what a launcher returns to the sweeper)."""
    returns: list[Optional[JobReturn]] = [None] * sum(len(g) for g in groups)
    for group, members in zip(groups, results):
        for i, ret in zip(group, members):
            returns[i] = ret
    return returns


def run_unit(hydra_context: HydraContext, task_function: TaskFunction, configs: list[DictConfig],
             singleton_state: Optional[dict] = None) -> list[JobReturn]:
    """Run one group (the unit of work of every backend); a JobReturn per member, in order."""
    if singleton_state is not None:
        Singleton.set_state(singleton_state)
    setup_globals()
    if len(configs) == 1:
        return [run_job(hydra_context=hydra_context, task_function=task_function, config=configs[0],
                        job_dir_key=SWEEP_DIR, job_subdir_key=SWEEP_SUBDIR)]
    return _run_group(hydra_context, task_function, configs)


def _run_group(hydra_context: HydraContext, task_function: TaskFunction, configs: list[DictConfig]) -> list[JobReturn]:
    original = HydraConfig.instance().cfg
    ended: dict[int, Any] = {}

    def end(i: int, value: Any) -> None:  # a member's on_job_end as soon as it has its result
        ended[i] = value
        _end_job(hydra_context, configs[i], returns[i], value)

    try:
        with _member_logs(configs), env_override(configs[0].hydra.job.env_set):
            returns = [_start_job(hydra_context, task_function, cfg) for cfg in configs]
            values = _train(task_function, configs, returns, end, ended)
        for i, value in enumerate(values):
            if i not in ended:
                _end_job(hydra_context, configs[i], returns[i], value)
        return returns
    finally:
        HydraConfig.instance().cfg = original


def _end_job(hydra_context: HydraContext, config: DictConfig, ret: JobReturn, value: Any) -> None:
    """What ``hydra.core.utils.run_job`` does once the task function returned ``value`` (or raised
    it): the JobReturn's status and value, then the callbacks' on_job_end under the job's config."""
    ret.status = JobStatus.FAILED if isinstance(value, BaseException) else JobStatus.COMPLETED
    ret.return_value = value
    ret.task_name = JobRuntime.instance().get("name")
    _flush_loggers()
    current = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    try:
        hydra_context.callbacks.on_job_end(config=config, job_return=ret)
    finally:
        HydraConfig.instance().cfg = current


def _start_job(hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> JobReturn:
    """``hydra.core.utils.run_job`` up to the task function: folder, ``.hydra/`` files, on_job_start."""
    HydraConfig.instance().set_config(config)
    output_dir = os.path.join(str(OmegaConf.select(config, SWEEP_DIR)), str(OmegaConf.select(config, SWEEP_SUBDIR)))
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = os.path.abspath(output_dir)
    HydraConfig.instance().set_config(config)
    ret = JobReturn(cfg=_task_config(config), hydra_cfg=copy.deepcopy(HydraConfig.instance().cfg),
                    overrides=OmegaConf.to_container(config.hydra.overrides.task), working_dir=os.getcwd())
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    if config.hydra.output_subdir is not None:
        hydra_output = Path(config.hydra.runtime.output_dir) / str(config.hydra.output_subdir)
        _save_config(ret.cfg, "config.yaml", hydra_output)
        _save_config(ret.hydra_cfg, "hydra.yaml", hydra_output)
        _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
    hydra_context.callbacks.on_job_start(config=config, task_function=task_function)
    return ret


def _train(task_function: TaskFunction, configs: list[DictConfig], returns: list[JobReturn],
           end: Callable[[int, Any], None], ended: Mapping[int, Any]) -> list[Any]:
    """Each member's value (what train.py's task function returns: ``_returned``), or the
    exception that ended it. ``end(i, value)`` is called for a member the moment it ends; ``ended``
    holds those already ended.

    A group that fails as a whole (not one member) is run again one job at a time through the task
    function, as the basic launcher would: finished members are skipped, the others resume from
    their checkpoints, and only the failing job fails; members that ended before keep their value.
    """
    from initlab.config import ConfigError
    from initlab.joblog import member_records

    dirs = [Path(cfg.hydra.runtime.output_dir) for cfg in configs]
    try:
        values = list(ensemble().run_group([r.cfg for r in returns], dirs, configs[0].hydra.launcher,
                                           on_end=lambda i, result: end(i, _returned(result, returns[i].cfg))))
    except Exception as err:  # noqa: BLE001 (reported per job below)
        log.warning("[batched] the group of %d failed (%s: %s); running its jobs one at a time", len(configs),
                    type(err).__name__, (str(err).splitlines() or [""])[0])
        values = []
        for i, (cfg, ret, job_dir) in enumerate(zip(configs, returns, dirs)):
            if i in ended:
                values.append(ended[i])
                continue
            HydraConfig.instance().set_config(cfg)
            with member_records(job_dir):
                try:
                    values.append(task_function(ret.cfg))
                except Exception as job_err:  # noqa: BLE001 (the JobReturn carries it, as in run_job)
                    values.append(job_err)
        return values
    values = [_returned(value, ret.cfg) for value, ret in zip(values, returns)]
    for value, job_dir in zip(values, dirs):
        if isinstance(value, ConfigError):
            log.error("%s", value, extra={"job_dir": str(job_dir)})
        elif isinstance(value, BaseException):
            log.error("job failed", exc_info=value, extra={"job_dir": str(job_dir)})
    return values


def _returned(value: Any, cfg: DictConfig) -> Any:
    """What train.py's task function returns for a job: its ``objective`` value (for
    hydra/sweeper=optuna), None without one; an exception passes through."""
    from initlab import objective

    if isinstance(value, BaseException):
        return value
    return None if cfg.get("objective") is None else objective.value(value, cfg.objective)


class _ForMember(logging.Filter):
    def __init__(self, job_dir: str) -> None:
        super().__init__()
        self.job_dir = job_dir

    def filter(self, record: logging.LogRecord) -> bool:
        from initlab.joblog import owner

        job = owner(record)
        return job is None or job == self.job_dir


@contextlib.contextmanager
def _member_logs(configs: list[DictConfig]) -> Iterator[None]:
    """Hydra's ``job_logging`` configured for the first member, its file handlers then replaced by
    one per member, each keeping the records of its member and the untagged ones."""
    def files(cfg: DictConfig) -> dict[str, str]:
        HydraConfig.instance().set_config(cfg)
        handlers = OmegaConf.to_container(cfg.hydra.job_logging, resolve=True).get("handlers") or {}
        return {name: h["filename"] for name, h in handlers.items() if isinstance(h, dict) and "filename" in h}

    dirs = [os.path.join(str(OmegaConf.select(c, SWEEP_DIR)), str(OmegaConf.select(c, SWEEP_SUBDIR))) for c in configs]
    for cfg, job_dir in zip(configs, dirs):
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = os.path.abspath(job_dir)
        Path(job_dir).mkdir(parents=True, exist_ok=True)
    filenames = [files(cfg) for cfg in configs]
    HydraConfig.instance().set_config(configs[0])
    configure_log(configs[0].hydra.job_logging, configs[0].hydra.verbose)
    root = logging.getLogger()
    added: list[logging.Handler] = []
    consoles = {h: h.formatter for h in root.handlers if not isinstance(h, logging.FileHandler) and h.formatter}
    for handler, formatter in consoles.items():
        handler.setFormatter(_MemberNamed(formatter))
    for handler in list(root.handlers):
        if not isinstance(handler, logging.FileHandler) or handler.get_name() not in filenames[0]:
            continue
        root.removeHandler(handler)
        handler.close()
        for cfg, names in zip(configs, filenames):
            twin = logging.FileHandler(names[handler.get_name()], mode=handler.mode, encoding=handler.encoding)
            twin.setFormatter(handler.formatter)
            twin.setLevel(handler.level)
            twin.addFilter(_ForMember(str(Path(cfg.hydra.runtime.output_dir).absolute())))
            root.addHandler(twin)
            added.append(twin)
    try:
        yield
    finally:
        for handler in added:
            root.removeHandler(handler)
            handler.close()
        for handler, formatter in consoles.items():
            handler.setFormatter(formatter)


class _MemberNamed(logging.Formatter):
    """The console's format with a member's records led by its folder's name: the members of a
    group share one console, where four "diverged at epoch 1" lines named no job."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        from initlab.joblog import owner

        job = owner(record)
        if job is None:
            return self.inner.format(record)
        named = logging.makeLogRecord(record.__dict__)  # the file handlers format the record as it is
        named.msg, named.args = f"{Path(job).name}: {record.getMessage()}", None
        return self.inner.format(named)


def submitit_executor(executor: str, params: dict[str, Any]) -> Any:
    """submitit's executor for the queue parameters, built as ``BaseSubmititLauncher.launch`` builds it."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = {k: v for k, v in params.items() if k != "max_members"}
    init_keys = {"max_num_timeout"}
    init = {"folder": params["submitit_folder"],
            **{f"{executor}_{k}": v for k, v in params.items() if k in init_keys}}
    queue = submitit.AutoExecutor(cluster=executor, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    queue.update_parameters(**{k if k in base else f"{executor}_{k}": v for k, v in params.items()
                               if k not in init_keys | {"submitit_folder"}})
    return queue
