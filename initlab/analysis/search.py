"""The trials of Optuna searches (hydra/sweeper=optuna_search) among the analyzed runs.

A job belongs to a search when its ``.hydra/hydra.yaml`` names Optuna's sweeper; its trial number
is Hydra's job number of the run that trained it (result.json ``job_num``; the sweeper asks the
study for trials in that order), its search is the
sweep folder, and its value is what train.py returned to the study: ``initlab.objective.value``
of its result.json (a diverged run's is the objective's worst value). Nothing here needs Optuna
or its study storage: the job folders hold everything, like any other sweep's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from initlab import objective
from initlab.records import RESULT_JSON

OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"  # as initlab.sweeps


def _trial(job_dir: Path) -> Optional[dict]:
    """One job's trial record, or None when it was not run by the Optuna sweeper."""
    hydra_yaml = job_dir / ".hydra" / "hydra.yaml"
    if not hydra_yaml.is_file() or OPTUNA_SWEEPER not in hydra_yaml.read_text(errors="replace"):
        return None  # most jobs: no YAML parsing, which is the slow part for a large grid
    hydra = OmegaConf.load(hydra_yaml).hydra
    if OmegaConf.select(hydra, "sweeper._target_") != OPTUNA_SWEEPER:
        return None
    metric = OmegaConf.load(job_dir / ".hydra" / "config.yaml").get("objective")
    if metric is None:
        return None
    result = json.loads((job_dir / RESULT_JSON).read_text())
    latest = int(hydra.job.num)  # a later trial that repeated these values (skipped) rewrote .hydra/
    trained = result.get("job_num")  # the trial that trained the folder (result.json since 2026-12-07)
    return {"search": str(Path(str(hydra.sweep.dir)).name), "trial": latest if trained is None else int(trained),
            "latest_trial": latest,
            "objective": str(metric), "direction": objective.direction(metric),
            "value": objective.value(result, metric), "diverged": result.get("status") == "diverged"}


def trials(runs: pd.DataFrame, root: Path, keys: list[str]) -> pd.DataFrame:
    """One row per run of an Optuna search: ``job``, ``search`` (the sweep folder's name),
    ``trial`` (the trial that trained it), ``latest_trial`` (the last trial that asked for its
    values: later when the sampler repeated them and the finished job was skipped), ``objective``,
    ``direction``, ``value``, ``diverged``, ``best_so_far`` (the best value of trials 0..trial of
    its search) and the varied ``keys`` that are numbers. Empty when no
    run was a trial. ``runs`` is the analysis' runs table, ``root`` the folder its ``job`` paths
    are relative to.
    """
    rows = [{"job": job, **trial} for job in runs["job"] if (trial := _trial(root / job)) is not None]
    columns = ["job", "search", "trial", "latest_trial", "objective", "direction", "value", "diverged", "best_so_far"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    params = [k for k in keys if k in runs and pd.api.types.is_numeric_dtype(runs[k])]
    frame = frame.merge(runs[["job", *params]], on="job").sort_values(["search", "trial", "job"], kind="stable")
    best = []
    for _, part in frame.groupby("search", sort=False):
        running = part["value"].cummax() if part["direction"].iloc[0] == "maximize" else part["value"].cummin()
        best.append(running)
    return frame.assign(best_so_far=pd.concat(best)).reset_index(drop=True)


def best(search: pd.DataFrame) -> pd.Series:
    """The best trial of one search's rows (the first of equals, as Optuna's ``best_trial``)."""
    values = search["value"] if search["direction"].iloc[0] == "maximize" else -search["value"]
    return search.loc[values.idxmax()]


def shown_jobs(runs: pd.DataFrame, trials: pd.DataFrame) -> set[str]:
    """The runs the other figure families draw: every run that is no trial, and each search's best
    trial (a search's trials differ in continuous values, one figure set each would be one per trial)."""
    best_jobs = {best(part)["job"] for _, part in trials.groupby("search", sort=False)}
    return set(runs["job"]) - set(trials["job"]) | best_jobs


def searched(search: pd.DataFrame) -> list[str]:
    """The parameters that differ between the trials of one search (``init.factor``, ``optimizer.lr``)."""
    fixed = {"job", "search", "trial", "latest_trial", "objective", "direction", "value", "diverged", "best_so_far"}
    return [k for k in search if k not in fixed and search[k].nunique() > 1]


def log_scaled(values: pd.Series) -> bool:
    """Whether a searched parameter reads better on a log axis: all positive, spanning >= 10x."""
    values = values[np.isfinite(values)]
    return bool(len(values) and (values > 0).all() and values.max() / values.min() >= 10)


def fmt(value: float) -> str:
    """A value for a caption: 4 significant digits, ``inf`` for a diverged loss."""
    return "inf" if math.isinf(value) else f"{value:.4g}"
