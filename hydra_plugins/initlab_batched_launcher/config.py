"""The batched launchers' structured configs, registered in ``hydra/launcher`` as ``initlab_batched*``
(the presets ``conf/hydra/launcher/batched*.yaml`` build on them).

``max_members`` bounds a group (null: ``initlab.ensemble.plan`` sizes groups from free memory). The
parallel and submitit variants keep every field of the launcher they extend; their unit of work is
a group, not a job.
"""

from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
from initlab.config import number

PACKAGE = "hydra_plugins.initlab_batched_launcher.batched_launcher"


def _max_members() -> Any:
    """The field, with the range a refusal words (``an integer >= 1 or null``)."""
    return number(None, ge=1, integer=True, optional=True)


@dataclass
class BatchedLauncherConf:
    _target_: str = f"{PACKAGE}.BatchedLauncher"
    max_members: Optional[int] = _max_members()


@dataclass
class BatchedJoblibLauncherConf(JobLibLauncherConf):
    _target_: str = f"{PACKAGE}.BatchedJoblibLauncher"
    max_members: Optional[int] = _max_members()


@dataclass
class BatchedLocalQueueConf(LocalQueueConf):
    _target_: str = f"{PACKAGE}.BatchedLocalLauncher"
    max_members: Optional[int] = _max_members()


@dataclass
class BatchedSlurmQueueConf(SlurmQueueConf):
    _target_: str = f"{PACKAGE}.BatchedSlurmLauncher"
    max_members: Optional[int] = _max_members()


for name, node in (("initlab_batched", BatchedLauncherConf), ("initlab_batched_joblib", BatchedJoblibLauncherConf),
                   ("initlab_batched_submitit_local", BatchedLocalQueueConf),
                   ("initlab_batched_submitit_slurm", BatchedSlurmQueueConf)):
    ConfigStore.instance().store(group="hydra/launcher", name=name, node=node, provider="initlab")
