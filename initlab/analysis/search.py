"""The trials of Optuna searches (hydra/sweeper=optuna_search) among the analyzed runs.

A job belongs to a search when its ``.hydra/hydra.yaml`` names Optuna's sweeper; its search is the
sweep folder, and its value is what train.py returned to the study: ``initlab.objective.value``
of its result.json (a diverged run's is the objective's worst value). Its trial number is the
first job number (Hydra's ``job.num``; the sweeper asks the study for trials in that order) under
which the latest sweep into the folder asked for it, from that sweep's ledger (``sweep.json``'s
id, ``.progress/<id>/<job num>.json``, written by initlab.callbacks): a trial that repeated
earlier values, or a search rerun to more trials, finds the job finished, and the ledger still
names it. Trials of earlier searches into the same folder are in no ledger: they are no part of
the search (``in_search`` False). A folder without such a ledger (an older initlab's, a copy)
falls back to the job folders alone: result.json's ``job_num``, the run that trained the folder.
Nothing here needs Optuna or its study storage.
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
from initlab.analysis.tables import Tables
from initlab.records import LEDGER, RESULT_JSON, SWEEP_JSON

OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"  # as initlab.sweeps
COLUMNS = ["job", "search", "folder", "trial", "latest_trial", "asked", "in_search", "kept", "objective", "direction",
           "value", "diverged", "best_so_far"]


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
    sweep = job_dir.parent if (job_dir.parent / SWEEP_JSON).is_file() else Path(str(hydra.sweep.dir))
    return {"search": sweep.name, "folder": str(sweep.resolve()), "dir": str(job_dir.resolve()),
            "trial": latest if trained is None else int(trained), "latest_trial": latest,
            "objective": str(metric), "direction": objective.direction(metric),
            "value": objective.value(result, metric), "diverged": result.get("status") == "diverged"}


def ledger(sweep: Path) -> Optional[dict[str, list[int]]]:
    """The latest sweep into the folder ``sweep``: each job folder it ended (resolved path) with the
    job numbers that ended there, ascending (several: a trial that repeated earlier values). None
    without sweep.json or its ledger folder (a sweep not started by initlab's callback)."""
    try:
        folder = sweep / LEDGER / str(json.loads((sweep / SWEEP_JSON).read_text())["id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not folder.is_dir():
        return None
    jobs: dict[str, list[int]] = {}
    for path in folder.glob("*.json"):
        try:
            entry = json.loads(path.read_text())
            num = int(path.stem)
        except (OSError, ValueError):
            continue
        jobs.setdefault(str((sweep / entry["job"]).resolve()), []).append(num)
    return {job: sorted(nums) for job, nums in jobs.items()}


def _numbered(frame: pd.DataFrame) -> pd.DataFrame:
    """One sweep folder's trial rows numbered by its latest ledger where that ledger holds any of
    them (``asked``: the job numbers that ended in them, repeats included); else by the job folders
    (``asked``: the highest job number + 1)."""
    ended = ledger(Path(frame["folder"].iloc[0]))
    listed = frame["dir"].isin(list(ended or ()))
    if not listed.any():
        return frame.assign(in_search=True, asked=int(frame["latest_trial"].max()) + 1)
    nums = frame["dir"].map(ended)
    return frame.assign(in_search=listed, asked=sum(len(n) for n in nums[listed]),
                        trial=[n[0] if ok else t for n, ok, t in zip(nums, listed, frame["trial"])],
                        latest_trial=[n[-1] if ok else t for n, ok, t in zip(nums, listed, frame["latest_trial"])])


def trials(t: Tables) -> pd.DataFrame:
    """One row per trial of each Optuna search a run of ``t.runs`` belongs to, read from every run
    found (``t.unfiltered``): a search is described whole whatever a filter kept. Columns ``job``,
    ``search`` (the sweep folder's name), ``folder`` (its resolved path: one search each), ``trial``
    (its number), ``latest_trial`` (the last job number that asked for its values: later when the
    sampler repeated them), ``asked`` (the trials the search asked for, repeats included),
    ``in_search`` (False for a trial of an earlier search into the same folder, see the module doc),
    ``kept`` (the filters kept it: it is in ``t.runs``), ``objective``, ``direction``, ``value``,
    ``diverged``, ``best_so_far`` (the best value of the search's trials 0..trial; NaN where not
    ``in_search``) and every numeric setting. Empty when no kept run was a trial.
    """
    every = t.runs if t.unfiltered is None else t.unfiltered
    records = [{"job": job, **trial} for job in every["job"] if (trial := _trial(t.root / job)) is not None]
    if not records:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.concat([_numbered(part) for _, part in pd.DataFrame(records).groupby("folder", sort=False)])
    frame["kept"] = frame["job"].isin(t.runs["job"])
    frame = frame[frame.groupby("folder")["kept"].transform("any")]
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    params = [k for k in t.settings if k in every and pd.api.types.is_numeric_dtype(every[k])]
    frame = frame.merge(every[["job", *params]], on="job").sort_values(["search", "folder", "trial", "job"],
                                                                        kind="stable")
    best = []
    for _, part in frame[frame["in_search"]].groupby("folder", sort=False):
        running = part["value"].cummax() if part["direction"].iloc[0] == "maximize" else part["value"].cummin()
        best.append(running)
    frame["best_so_far"] = pd.concat(best) if best else np.nan
    return frame.drop(columns="dir").reset_index(drop=True)


def best(search: pd.DataFrame) -> pd.Series:
    """The best trial of one search's rows (the first of equals, as Optuna's ``best_trial``)."""
    values = search["value"] if search["direction"].iloc[0] == "maximize" else -search["value"]
    return search.loc[values.idxmax()]


def shown_jobs(runs: pd.DataFrame, trials: pd.DataFrame) -> set[str]:
    """The runs the other figure families draw: every run that is no trial, and of each search the
    best trial the filters kept (its whole search's best unfiltered; a search's trials differ in
    continuous values, one figure set each would be one per trial), and likewise the best kept
    trial of the earlier searches into its folder."""
    kept = trials[trials["kept"]]
    best_jobs = {best(part)["job"] for _, part in kept.groupby(["folder", "in_search"], sort=False)}
    return set(runs["job"]) - set(trials["job"]) | best_jobs


def searched(search: pd.DataFrame) -> list[str]:
    """The parameters that differ between the trials of one search (``init.factor``, ``optimizer.lr``)."""
    return [k for k in search if k not in COLUMNS and search[k].nunique() > 1]


def log_scaled(values: pd.Series) -> bool:
    """Whether a searched parameter reads better on a log axis: all positive, spanning >= 10x."""
    values = values[np.isfinite(values)]
    return bool(len(values) and (values > 0).all() and values.max() / values.min() >= 10)


def fmt(value: float) -> str:
    """A value for a caption: 4 significant digits, ``inf`` for a diverged loss."""
    return "inf" if math.isinf(value) else f"{value:.4g}"
