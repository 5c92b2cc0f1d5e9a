"""TEMPORARY stand-in for ``initlab.ensemble`` until that package is merged: the same interface
(``VARYING``, ``unbatchable``, ``plan``, ``run_group``), members trained one at a time with
``initlab.train.job.run``. Delete this file (and its import in ``_core.ensemble``) at merge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from initlab.config import ExperimentConfig

VARYING = ("seed", "init", "model.bias_init", "model.bias_std", "optimizer.lr", "optimizer.weight_decay",
           "resume", "threads", "device", "checkpoint", "logger")
DEFAULT_MEMBERS = 8


def unbatchable(exp: ExperimentConfig) -> Optional[str]:
    return None


def _shared(cfg: DictConfig) -> str:
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in VARYING:
        *parent, last = key.split(".")
        node = plain
        for part in parent:
            node = node.get(part, {})
        node.pop(last, None)
    return OmegaConf.to_yaml(OmegaConf.create(plain))


def plan(cfgs: Sequence[DictConfig], max_members: Optional[int]) -> list[list[int]]:
    size = max_members or DEFAULT_MEMBERS
    by_key: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        by_key.setdefault(_shared(cfg), []).append(i)
    return [same[k:k + size] for same in by_key.values() for k in range(0, len(same), size)]


def run_group(cfgs: Sequence[DictConfig], job_dirs: Sequence[Path],
              launcher: Optional[Mapping[str, Any]] = None) -> list[Any]:
    from initlab.config import ConfigError
    from initlab.joblog import member_records
    from initlab.train.job import run

    results: list[Any] = []
    for cfg, job_dir in zip(cfgs, job_dirs):
        with member_records(job_dir):
            try:
                results.append(run(cfg, Path(job_dir), launcher))
            except ConfigError as err:
                results.append(err)
    return results
