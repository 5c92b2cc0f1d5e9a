"""The batched launchers: in this process, with joblib workers, or as submitit (SLURM/local) tasks.

All four compose every job, group them (``_core.plan_groups``) and hand whole groups to their
backend; the heavy imports (torch, initlab) happen only when a sweep launches, so Hydra's plugin
scan stays fast.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_joblib_launcher import joblib_launcher  # modules, not classes: Hydra's plugin scan
from hydra_plugins.hydra_submitit_launcher import submitit_launcher  # lists a module's classes as its plugins
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def _check_max_members(max_members: Optional[int]) -> Optional[int]:
    if max_members is not None and max_members < 1:
        raise ValueError(f"hydra.launcher.max_members={max_members}; valid: null (automatic) or an integer >= 1")
    return max_members


class BatchedLauncher(Launcher):
    """Groups run one after another in this process (``hydra/launcher=batched``)."""

    def __init__(self, max_members: Optional[int] = None) -> None:
        self.max_members = _check_max_members(max_members)
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from . import _core

        configs, groups = _core.prepare(self, job_overrides, initial_job_idx, job_id=lambda cfg, idx: idx)
        returns: list[Optional[JobReturn]] = [None] * len(configs)
        for group in groups:
            members = _core.run_unit(self.hydra_context, self.task_function, [configs[i] for i in group])
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            for i, ret in zip(group, members):
                returns[i] = ret
        return returns


class BatchedJoblibLauncher(joblib_launcher.JoblibLauncher):
    """Groups as joblib's tasks (``hydra/launcher=batched_parallel``): one group per worker at a time."""

    def __init__(self, max_members: Optional[int] = None, **joblib: Any) -> None:
        super().__init__(**joblib)
        self.max_members = _check_max_members(max_members)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from joblib import Parallel, delayed
        from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg

        from . import _core

        configs, groups = _core.prepare(self, job_overrides, initial_job_idx,
                                        job_id=lambda cfg, idx: f"{cfg.hydra.job.name}_{idx}")
        joblib_cfg = dict(self.joblib, backend="loky")  # the threading backend is incompatible with Hydra
        process_joblib_cfg(joblib_cfg)
        log.info("Joblib.Parallel(%s) is launching %s", ",".join(f"{k}={v}" for k, v in joblib_cfg.items()),
                 _core.counted(len(groups), "group"))
        state = Singleton.get_state()
        results = Parallel(**joblib_cfg)(
            delayed(_core.run_unit)(self.hydra_context, self.task_function, [configs[i] for i in group], state)
            for group in groups)
        return _core.in_job_order(groups, results)


class BatchedSubmititLauncher(submitit_launcher.BaseSubmititLauncher):
    """Groups as submitit tasks: one SLURM array task (or local subprocess) per group."""

    def __init__(self, max_members: Optional[int] = None, **params: Any) -> None:
        super().__init__(**params)
        self.max_members = _check_max_members(max_members)

    def __call__(self, configs: list[DictConfig], singleton_state: dict) -> list[JobReturn]:  # type: ignore[override]
        """One group, in the submitit task (submitit pickles this launcher and calls it)."""
        import submitit

        from . import _core

        Singleton.set_state(singleton_state)
        setup_globals()
        for cfg in configs:
            with open_dict(cfg.hydra.job):
                cfg.hydra.job.id = submitit.JobEnvironment().job_id
        return _core.run_unit(self.hydra_context, self.task_function, configs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from . import _core

        configs, groups = _core.prepare(self, job_overrides, initial_job_idx,
                                        job_id=lambda cfg, idx: f"job_id_for_{idx}")
        executor = _core.submitit_executor(self._EXECUTOR, self.params)
        log.info("Submitit '%s' sweep output dir : %s (%s, one per group)", self._EXECUTOR,
                 self.config.hydra.sweep.dir, _core.counted(len(groups), "task"))
        state = Singleton.get_state()
        jobs = executor.map_array(self, [[configs[i] for i in group] for group in groups], [state] * len(groups))
        return _core.in_job_order(groups, [job.results()[0] for job in jobs])


class BatchedLocalLauncher(BatchedSubmititLauncher):
    _EXECUTOR = "local"


class BatchedSlurmLauncher(BatchedSubmititLauncher):
    _EXECUTOR = "slurm"
