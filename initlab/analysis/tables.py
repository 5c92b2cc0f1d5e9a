"""Job folders -> pandas tables: the read side of the records contract (initlab/records.py).

Only what a job wrote to disk is read (result.json, epochs.csv, layers.csv, the optional
jacobian.csv, jacobian_sv.csv, steps.csv and distributions.csv, and Hydra's ``.hydra`` files),
never the training code, so any sweep folder from any launcher can be analyzed. A job that
cannot be read is skipped with a reason instead of failing the whole analysis; files and
columns that older jobs lack (theory predictions, Jacobians, ``frac_dead``, result.json
``rows``, ``n_params``, epochs.csv ``grad_norm``) are optional. layers.csv rows name their
measurement site (``site``, ``kind``, ``index`` in forward order); MLP jobs recorded before sites
existed get ``kind`` hidden for layers 1..depth and output for depth+1, ``index`` = layer - 1 and
no site name. Where result.json records how many rows each file has, every file is checked
against it, so a cut file never changes results silently.

A run that restarted on a plateau keeps every attempt's rows (an ``attempt`` column, 0-based);
the tables hold only the final attempt's (result.json ``final_attempt``; absent: 0), and files
without the column count as attempt 0. runs.csv says how many attempts there were.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from initlab import choices  # no torch: the plot order of activations and inits
from initlab import theory as mean_field  # pure numpy/scipy
from initlab.analysis.filters import apply_filters
from initlab.records import EPOCHS_CSV, JACOBIAN_CSV, JACOBIAN_SV_CSV, LAYERS_CSV, RESULT_JSON

STEPS_CSV = "steps.csv"  # per-step records (log_every_steps > 0)
DISTRIBUTIONS_CSV = "distributions.csv"  # per-site quantiles and histograms (distributions_every > 0)
REQUIRED_STEP_COLUMNS = ("step", "epoch", "loss", "lr", "site", "grad_norm")
REQUIRED_DISTRIBUTION_COLUMNS = ("epoch", "site", "kind", "index", "tensor", "stat", "bin_lo", "bin_hi", "value")
# result.json fields of early stopping and restarts, copied into runs.csv (null where not used)
STOPPING_COLUMNS = ("best_epoch", "stopped_epoch", "restored_best")

FAILED = "FAILED"  # initlab.callbacks writes it into the folder of a job that raised: "<ErrorType>: <message>"

log = logging.getLogger(__name__)

GROUPS = ("activation", "init", "dataset", "optimizer", "model")
# Column of a job's preset groups (config groups with ``@package _global_`` that set several other
# groups at once, e.g. deep_plain): such a choice names an arm of the sweep, drawn as a label.
PRESETS = "_presets"
# Runs sort in the registries' plot order (related inits side by side); other options follow.
ACTIVATIONS, INITS = tuple(choices.ACTIVATIONS), tuple(choices.INITS)
# What the figures read; other columns (theory predictions, newer statistics) pass through when
# present, so jobs recorded before a column was added still load.
# epochs.csv columns every job since P5 wrote; newer ones (grad_norm, val_*) are optional.
REQUIRED_EPOCH_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_time", "lr")
REQUIRED_LAYER_COLUMNS = ("epoch", "layer", "act_mean", "act_std", "frac_zero", "frac_saturated", "grad_norm",
                 "delta_rms")
# How fast a run converged (``_outcome``): NaN for a diverged run.
SPEED_COLUMNS = ("convergence_epoch", "epochs_to_95_peak_train", "epochs_to_95_final_test")
EPOCH_COUNT_COLUMNS = ("best_epoch", "stopped_epoch", "epochs_run", "final_attempt", "n_attempts", *SPEED_COLUMNS)
# The mean-field phase of the hidden layers (result.json ``theory``), copied into runs.csv.
THEORY_COLUMNS = ("sigma_w2", "sigma_b2", "chi1", "q_star", "xi_q", "xi_c", "critical_sigma_w2")
# Chance level comes from result.json ``data.n_classes``; jobs recorded before it was written fall
# back to the dataset's known class count (or dataset.n_classes for datasets with a variable count).
N_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10,
             "moons": 2, "circles": 2, "xor": 2}


class BadJob(Exception):
    """A job folder that cannot be analyzed; the message is the one-line reason."""


@dataclass
class Skipped:
    job: str
    reason: str


@dataclass
class Tables:
    """Everything the plots and the report need; ``keys`` are the choices that vary between jobs."""

    runs: pd.DataFrame
    epochs: pd.DataFrame
    layers: pd.DataFrame
    jacobian: Optional[pd.DataFrame]  # jacobian.csv rows of every job that has one
    skipped: list[Skipped]
    keys: list[str]
    root: Path
    extra_keys: list[str] = field(default_factory=list)  # varied, but not drawn by the figures
    margin: float = 0.1  # trainable: final test accuracy > chance + margin
    spectra: Optional[pd.DataFrame] = None  # jacobian_sv.csv rows (every singular value), likewise
    steps: Optional[pd.DataFrame] = None  # steps.csv rows of every job that has one
    distributions: Optional[pd.DataFrame] = None  # distributions.csv rows, likewise
    presets: list[str] = field(default_factory=list)  # varied preset groups: each run's is its ``arm`` label
    settings: list[str] = field(default_factory=list)  # runs.csv's setting columns (choices and parameters)
    # every run read, before the KEY=VALUES filters (as ``runs``, less the labels): an Optuna search's figure
    # is drawn from all its trials whatever a filter kept (initlab.analysis.search.trials); None: ``runs``
    unfiltered: Optional[pd.DataFrame] = None


# --- finding jobs -----------------------------------------------------------------------------
def newest_sweep(root: Path = Path("outputs/multirun")) -> Path:
    """The sweep whose multirun.yaml (written once, when the sweep starts) is newest."""
    marks = list(root.rglob("multirun.yaml")) if root.is_dir() else []
    if not marks:
        raise FileNotFoundError(f"no sweep under {root}/ (run `python train.py -m ...` first)")
    return max(marks, key=lambda p: p.stat().st_mtime).parent


def is_job(path: Path) -> bool:
    """Whether ``path`` is a job folder (it has ``.hydra/`` or ``result.json``)."""
    return (path / ".hydra").is_dir() or (path / RESULT_JSON).is_file()


def find_jobs(paths: Iterable[Path]) -> list[Path]:
    """Job folders at or below ``paths`` (a job's own subfolders are not searched)."""
    jobs = []
    for path in paths:
        for here, dirs, _ in os.walk(path):
            if is_job(Path(here)):
                jobs.append(Path(here))
                dirs.clear()
            else:
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(set(jobs))


# --- reading one job --------------------------------------------------------------------------
def _read_csv(path: Path, required: Iterable[str]) -> pd.DataFrame:
    data = path.read_bytes()
    if not data.endswith(b"\n"):  # records end every row with a newline; a cut file does not
        raise BadJob(f"{path.name} is truncated")
    frame = pd.read_csv(path)
    missing = [c for c in required if c not in frame]
    if missing:
        raise BadJob(f"{path.name} lacks column(s) {', '.join(missing)}")
    return frame


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            flat[prefix + key] = str(value)
        else:
            flat[prefix + key] = value
    return flat


def _hydra_choices(path: Path, result: dict) -> dict:
    """Group option names, the job's config as columns (``init.factor``) and its overrides.

    result.json's ``choices`` hold every setting of the run since they were made complete (they
    have ``jacobian_every``); those are read first, because Hydra rewrites ``.hydra/`` whenever
    the folder is asked for again: train.py refuses a rerun of other settings before Hydra starts
    (initlab.resume.check_folder), but not under HYDRA_FULL_ERROR=1, nor for a folder known only
    once its job runs. Older jobs' settings come from ``.hydra/config.yaml``.
    """
    hydra_dir = path / ".hydra"
    config, runtime_keys = result["choices"], []
    complete = "jacobian_every" in config
    row = {g: config[g]["name"] for g in GROUPS if g in config}
    if hydra_dir.is_dir():
        hydra = OmegaConf.load(hydra_dir / "hydra.yaml").hydra
        runtime_keys = list(hydra.job.config.override_dirname.exclude_keys)  # resume, device, ...
        row["overrides"] = " ".join(OmegaConf.to_container(OmegaConf.load(hydra_dir / "overrides.yaml")))
        choices = OmegaConf.to_container(hydra.runtime.choices)  # also +experiment=...
        choices = {k: v for k, v in choices.items() if k not in runtime_keys}  # logger=...: how it was watched
        row.update({k: v for k, v in choices.items() if not k.startswith("hydra/") and v is not None
                    and not (complete and k in GROUPS)})
        # A preset group (conf/deep_plain/) has no node of its own: it only sets other groups' values.
        row[PRESETS] = " ".join(k for k, v in choices.items() if v is not None and k not in config
                                and k not in GROUPS and k != "experiment" and not k.startswith("hydra/"))
        if not complete:
            config = OmegaConf.to_container(OmegaConf.load(hydra_dir / "config.yaml"))
    row.update({k: v for k, v in _flatten(config).items() if not k.endswith(".name") and k not in runtime_keys})
    return row


def _failure_hint(path: Path) -> str:
    """The last error line of the job's log, which says why an unfinished job stopped."""
    for log_file in path.glob("*.log"):
        errors = [l for l in log_file.read_text(errors="replace").splitlines() if "ERROR" in l]
        if errors:
            return f" (log: {errors[-1].split(' - ', 1)[-1][:160]})"
    return ""


@dataclass
class Job:
    """What one finished job recorded; ``jacobian`` and ``spectra`` are None when it has no such file."""

    choices: dict
    outcome: dict
    epochs: pd.DataFrame
    layers: pd.DataFrame
    jacobian: Optional[pd.DataFrame]
    spectra: Optional[pd.DataFrame]
    steps: Optional[pd.DataFrame] = None
    distributions: Optional[pd.DataFrame] = None


def _optional_csv(path: Path, required: Iterable[str] = ("epoch", "kind")) -> Optional[pd.DataFrame]:
    """A file that older jobs lack: None when absent; a cut one is a bad job like any other."""
    return _read_csv(path, required) if path.is_file() else None


def final_attempt(frame: Optional[pd.DataFrame], attempt: int) -> Optional[pd.DataFrame]:
    """The rows of ``attempt`` (without its ``attempt`` column); a file without the column holds
    attempt 0 only. None stays None."""
    if frame is None:
        return None
    if "attempt" not in frame:
        return frame if attempt == 0 else frame.iloc[:0]
    return frame[frame["attempt"] == attempt].drop(columns="attempt").reset_index(drop=True)


def _attempts(result: dict, epochs: pd.DataFrame) -> dict:
    """final_attempt (result.json; 0 when absent) and n_attempts (distinct attempts in epochs.csv)."""
    final = result.get("final_attempt")
    final = 0 if final is None else int(final)
    n = int(epochs["attempt"].nunique()) if "attempt" in epochs and len(epochs) else 1
    return {"final_attempt": final, "n_attempts": max(n, final + 1)}


def _check_rows(result: dict, frames: dict[str, Optional[pd.DataFrame]]) -> None:
    """Each file's data rows against result.json ``rows`` (what the job wrote); raises BadJob.

    A file cut at a row boundary still ends in a newline, so only the recorded count catches it.
    Jobs recorded before ``rows`` existed are not checked here. A file absent counts 0 rows.
    """
    expected = result.get("rows")
    if not isinstance(expected, dict):
        return
    for name, frame in frames.items():
        if name not in expected:
            continue
        have = 0 if frame is None else len(frame)
        if have != expected[name]:
            raise BadJob(f"{name} has {have} rows, result.json records {expected[name]}")


def read_job(path: Path) -> Job:
    """Everything one finished job recorded; raises BadJob.

    Every epoch 0..final must have the same number of layers.csv rows (one per site and per
    weight no site names); an MLP recorded before sites existed, exactly depth + 1.
    """
    failed, finished = path / FAILED, path / RESULT_JSON
    if failed.is_file() and _written_ns(failed) >= _written_ns(finished):
        # the sweep callback's "<ErrorType>: <message>"; a result.json older than it is an earlier run's
        # (a finished job asked for more epochs whose extension failed), not what the job's .hydra asks for
        reason = failed.read_text(errors="replace").strip().splitlines() or ["no message"]
        older = f" (its {RESULT_JSON} is an earlier run's)" if finished.is_file() else ""
        raise BadJob(f"failed: {reason[0]}{older}")  # whole: a reason's advice comes last
    if not finished.is_file():
        raise BadJob(f"unfinished: no {RESULT_JSON}{_failure_hint(path)}")
    try:
        result = json.loads((path / RESULT_JSON).read_text())
    except json.JSONDecodeError as err:
        raise BadJob(f"broken {RESULT_JSON}: {err}") from err
    epochs = _read_csv(path / EPOCHS_CSV, REQUIRED_EPOCH_COLUMNS)
    layers = _read_csv(path / LAYERS_CSV, REQUIRED_LAYER_COLUMNS)
    jacobian, spectra = _optional_csv(path / JACOBIAN_CSV), _optional_csv(path / JACOBIAN_SV_CSV)
    steps = _optional_csv(path / STEPS_CSV, REQUIRED_STEP_COLUMNS)
    distributions = _optional_csv(path / DISTRIBUTIONS_CSV, REQUIRED_DISTRIBUTION_COLUMNS)
    _check_rows(result, {EPOCHS_CSV: epochs, LAYERS_CSV: layers, JACOBIAN_CSV: jacobian,
                         JACOBIAN_SV_CSV: spectra, STEPS_CSV: steps, DISTRIBUTIONS_CSV: distributions})
    attempts = _attempts(result, epochs)
    epochs, layers, jacobian, spectra, steps, distributions = (
        final_attempt(f, attempts["final_attempt"]) for f in (epochs, layers, jacobian, spectra, steps, distributions))
    last, depth = _last_epoch(result, epochs), result["choices"]["depth"]
    if epochs["epoch"].tolist() != list(range(last + 1)):
        where = f" of attempt {attempts['final_attempt']}" if attempts["n_attempts"] > 1 else ""
        raise BadJob(f"{EPOCHS_CSV} has epochs {epochs['epoch'].min()}..{epochs['epoch'].max()}{where}, "
                     f"result.json ends at {last}")
    choices = _hydra_choices(path, result)
    layers = _with_sites(layers, depth, last)
    outcome = {**_outcome(result, epochs, choices), **attempts, **_theory_fit(layers, jacobian, depth)}
    return Job(choices, outcome, epochs, layers, jacobian, spectra, steps, distributions)


def _written_ns(path: Path) -> int:
    """When ``path`` was last written (ns since the epoch); -1 for a file that is not there."""
    return path.stat().st_mtime_ns if path.is_file() else -1


def _last_epoch(result: dict, epochs: pd.DataFrame) -> int:
    """The last epoch trained: where early stopping stopped (result.json ``stopped_epoch``); when
    the best weights were restored without a stop, the final metrics are an earlier epoch's, so the
    file's last epoch; else the final epoch."""
    stopped = result.get("stopped_epoch")
    if stopped is not None:
        return int(stopped)
    if result.get("restored_best") and len(epochs):
        return int(epochs["epoch"].max())
    return int(result["final"]["epoch"])


SITE_COLUMNS = ("site", "kind", "index")  # appended to layers.csv when models got measurement sites


def _with_sites(layers: pd.DataFrame, depth: int, last: int) -> pd.DataFrame:
    """``layers`` with its site columns checked, or filled in for an MLP recorded before them; raises BadJob."""
    if "kind" not in layers:
        if len(layers) != (last + 1) * (depth + 1):
            raise BadJob(f"{LAYERS_CSV} has {len(layers)} rows, expected {(last + 1) * (depth + 1)}")
        return layers.assign(site=np.nan, kind=np.where(layers["layer"] <= depth, "hidden", "output"),
                             index=layers["layer"] - 1)
    missing = [c for c in SITE_COLUMNS if c not in layers]
    if missing:
        raise BadJob(f"{LAYERS_CSV} lacks column(s) {', '.join(missing)}")
    per_epoch = layers.groupby("epoch").size()
    if per_epoch.index.tolist() != list(range(last + 1)) or per_epoch.nunique() != 1:
        counts = ", ".join(f"{e}: {n}" for e, n in per_epoch.items())
        raise BadJob(f"{LAYERS_CSV} rows per epoch differ or miss epochs 0..{last} ({counts})")
    return layers


# --- per-run summary --------------------------------------------------------------------------
def _first_epoch_reaching(epochs: pd.DataFrame, column: str, target: float) -> float:
    hit = epochs.loc[epochs[column] >= target, "epoch"]
    return float(hit.iloc[0]) if len(hit) else float("nan")


def convergence(epochs: pd.DataFrame, final: Optional[pd.Series] = None) -> dict:
    """The CNN study's convergence epoch: the first trained epoch (>= 1) whose validation accuracy
    reaches 95% of the final one; test accuracy where the job held out no validation split.

    ``epochs``: one job's epochs.csv; ``final``: the row of the final model (the best epoch's where
    early stopping restored it; default the last row). Returns ``convergence_epoch`` (NaN if never
    reached, e.g. a final accuracy of NaN) and ``convergence_metric`` ("val_acc" or "test_acc").
    Source: /work/shared/REFERENCE.md, study 002 ("first epoch with validation accuracy >= 95% of
    the final one").
    """
    metric = "val_acc" if "val_acc" in epochs and epochs["val_acc"].notna().any() else "test_acc"
    trained = epochs[epochs["epoch"] >= 1]
    target = (epochs.iloc[-1] if final is None else final)[metric]
    return {"convergence_epoch": _first_epoch_reaching(trained, metric, 0.95 * target),
            "convergence_metric": metric}


def _outcome(result: dict, epochs: pd.DataFrame, row: dict) -> dict:
    """Final/best metrics, convergence speed and trainability of one run.

    The final metrics are the final model's: where early stopping restored the best weights
    (result.json ``restored_best``), those of ``best_epoch``; ``epochs_run`` is the last epoch trained.
    The best metrics are over the trained epochs and the final model (restored at epoch 0, it is
    the initial state, and a "best" below the final value would contradict it). A diverged run
    has no convergence speed (SPEED_COLUMNS are NaN).
    """
    trained = epochs[epochs["epoch"] >= 1]  # epoch 0 is the state at init
    final = epochs.iloc[-1]
    if result.get("restored_best") and result.get("best_epoch") is not None:
        final = epochs[epochs["epoch"] == int(result["best_epoch"])].iloc[0]
    n_classes = (result.get("data") or {}).get("n_classes") or N_CLASSES.get(row.get("dataset"),
                                                                             row.get("dataset.n_classes"))
    out = {
        "status": result["status"],
        "diverged_epoch": result.get("diverged_epoch"),
        "epochs_run": int(epochs["epoch"].iloc[-1]),
        **{k: result.get(k) for k in STOPPING_COLUMNS},
        "chance": 1.0 / n_classes if n_classes else float("nan"),
    }
    for split in ("train", "test"):
        out[f"final_{split}_acc"] = final[f"{split}_acc"]
        out[f"final_{split}_loss"] = final[f"{split}_loss"]
        out[f"best_{split}_acc"] = _with_final(trained, final, f"{split}_acc").max()
        out[f"best_{split}_loss"] = _with_final(trained, final, f"{split}_loss").min()
    # the reference study: first epoch within 95% of the peak train accuracy; the CNN study: of
    # the final test accuracy
    out["epochs_to_95_peak_train"] = _first_epoch_reaching(trained, "train_acc", 0.95 * out["best_train_acc"])
    out["epochs_to_95_final_test"] = _first_epoch_reaching(trained, "test_acc", 0.95 * out["final_test_acc"])
    if "val_acc" in epochs and epochs["val_acc"].notna().any():
        out["final_val_acc"], out["best_val_acc"] = final["val_acc"], _with_final(trained, final, "val_acc").max()
    out.update(convergence(epochs, final))
    if result["status"] == "diverged":  # its accuracies are chance or worse: reaching them is no convergence
        out.update(dict.fromkeys(SPEED_COLUMNS, math.nan))
    out["n_params"] = result.get("n_params")
    if "theory_reason" in result:
        out["theory_reason"] = result["theory_reason"]
    out["wall_time"] = result.get("wall_time")
    out["s_per_epoch"] = trained["epoch_time"].mean()
    out["device_name"] = result.get("device")
    out.update(_theory(result))
    return out


def _with_final(trained: pd.DataFrame, final: pd.Series, column: str) -> pd.Series:
    """``column`` over the trained epochs and the final model's row (NaN skipped by max/min)."""
    return pd.concat([trained[column], pd.Series([final[column]], dtype=float)], ignore_index=True)


def _theory(result: dict) -> dict:
    """The job's mean-field phase; {} for jobs recorded before it was; every value NaN for a run
    the theory does not cover (``theory_reason``: a residual net, norm layers, ...) or without a
    finite sigma_w^2.

    result.json writes non-finite numbers as null. Where the phase was computed a depth scale is
    never NaN, so a null one is infinite (at criticality, or without a finite q*); a null q* is inf
    or NaN (relu exactly at criticality without bias: every length is a fixed point), told apart by
    recomputing it.
    """
    theory = result.get("theory")
    if not isinstance(theory, dict):
        return {}
    out = {k: (float("nan") if theory.get(k) is None else float(theory[k])) for k in THEORY_COLUMNS}
    if result.get("theory_reason") or not math.isfinite(out["sigma_w2"]):
        return dict.fromkeys(THEORY_COLUMNS, float("nan"))
    for k in ("xi_q", "xi_c"):
        if k in theory and theory[k] is None:
            out[k] = float("inf")
    if "q_star" in theory and theory["q_star"] is None:
        try:
            out["q_star"] = mean_field.fixed_point(result["choices"]["activation"], out["sigma_w2"],
                                                   out["sigma_b2"])
        except Exception:  # noqa: BLE001 - unknown activation: leave it NaN
            pass
    return out


def _log_misfit(measured: pd.Series, predicted: pd.Series) -> float:
    """Median |ln(measured / predicted)| over the rows where both are positive and finite."""
    ok = (measured > 0) & (predicted > 0)  # NaN (no prediction) and zeros (zero init) drop out
    ratio = np.log(measured[ok].astype(float) / predicted[ok].astype(float))
    ratio = ratio[np.isfinite(ratio)]
    return float(ratio.abs().median()) if len(ratio) else float("nan")


def _theory_fit(layers: pd.DataFrame, jacobian: Optional[pd.DataFrame], depth: int) -> dict:
    """How far the measurements at init sit from the mean-field predictions, per run.

    ``q_log_misfit``: median over hidden layers of |ln(preact_sq / q_pred)|; ``delta_log_misfit``:
    the same for delta_rms (hidden layers only: the prediction is anchored at the output layer);
    ``jac_msv_ratio``: measured / predicted mean squared singular value of the hidden Jacobian.
    Absent (not NaN) for jobs recorded without predictions, so old sweeps keep their columns.
    """
    out = {}
    hidden = layers[(layers["epoch"] == 0) & (layers["kind"] == "hidden")]
    for measured, predicted, name in (("preact_sq", "q_pred", "q_log_misfit"),
                                      ("delta_rms", "delta_rms_pred", "delta_log_misfit")):
        if measured in hidden and predicted in hidden:
            out[name] = _log_misfit(hidden[measured], hidden[predicted])
    if jacobian is not None and "mean_sq_sv_pred" in jacobian:
        row = jacobian[(jacobian["epoch"] == 0) & (jacobian["kind"] == "hidden")]
        if len(row) and row["mean_sq_sv_pred"].iloc[0] > 0:
            out["jac_msv_ratio"] = float(row["mean_sq_sv"].iloc[0] / row["mean_sq_sv_pred"].iloc[0])
    return out


def as_written(runs: pd.DataFrame) -> pd.DataFrame:
    """runs.csv's content: epoch numbers and counts (EPOCH_COUNT_COLUMNS) as integers with empty
    cells where a run has none (pandas stores a column with NaN as floats: ``6.0``)."""
    whole = {c: "Int64" for c in EPOCH_COUNT_COLUMNS
             if c in runs and pd.api.types.is_float_dtype(runs[c]) and (runs[c].dropna() % 1 == 0).all()}
    return runs.astype(whole)


# --- the whole set ----------------------------------------------------------------------------
def varied_keys(runs: pd.DataFrame, choices: list[str]) -> list[str]:
    """Choices that differ between jobs; ``init.factor`` counts only if it varies within an init."""
    keys = []
    for col in choices:
        group = col.split(".")[0]
        if col in ("job", "overrides"):
            continue
        if "." in col and group in runs:
            varies = (runs.groupby(group)[col].nunique(dropna=False) > 1).any()
        else:
            varies = runs[col].astype(str).nunique() > 1
        if varies:
            keys.append(col)
    return keys


NOISE = 1e-7  # relative: float32's precision, where recorded values carry rounding


def value_text(value: float) -> str:
    """A number as every title, label and figure file name writes it: ``:g`` (0.05, 100000, 1e+06;
    64 for 64.0), with as many more significant digits (up to 12) as it takes to come within
    NOISE of the value (0.1234567 and 0.1234568, which ``:g`` writes alike, stay apart). Closer
    than that is float noise: Hydra's range writes 0.3 as 0.30000000000000004, a σ_b² computed in
    float32 is 0.05000000100624. File names wrote ``str`` (100000.0) under titles that said 100000.
    Values that still read alike get numbered figure files (PlotterBase._save)."""
    for digits in range(6, 13):
        text = f"{value:.{digits}g}"
        if abs(float(text) - value) <= NOISE * abs(value):
            return text
    return text


def shown(value: object) -> str:
    """A value as titles, file names and the report write it: a number in the one format
    (value_text; pandas reads an integer column with gaps as floats: 128.0 reads 128)."""
    return value_text(value) if isinstance(value, float) else str(value)


def _labels(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Display names: the option name, plus its parameters where they vary ("he_normal factor=0.5");
    a switch by its name where on and not at all where off ("orthogonal embedding", not
    "orthogonal embedding=False" for a CNN beside a transformer)."""
    def part(name: str, value: object) -> str:
        if isinstance(value, (bool, np.bool_)):
            return name if value else ""
        return f"{name}={shown(value)}"

    for group in ("activation", "init", "model"):
        params = [k for k in keys if k.startswith(group + ".")]

        def label(row: pd.Series) -> str:
            parts = [part(p.split(".", 1)[1], row[p]) for p in params if pd.notna(row[p])]
            return " ".join([str(row[group]), *filter(None, parts)])

        runs[f"{group}_label"] = runs.apply(label, axis=1) if len(runs) else []
    return runs


def run_identity(choices: dict) -> tuple:
    """What makes two job folders one run: every setting (runtime keys are not among a job's
    choices), not how it was asked for (its overrides' spelling, the experiment or preset names)."""
    named = {"overrides", "experiment", PRESETS, *str(choices.get(PRESETS) or "").split()}
    return tuple(sorted((k, repr(v)) for k, v in choices.items() if k not in named))


def load(paths: list[Path], filters: Optional[dict[str, list[str]]] = None, margin: float = 0.1) -> Tables:
    """Read every job under ``paths``; skip (and log) the ones that cannot be read, and the second
    folder of a run found twice (a rerun into another folder would count as one more seed).

    A run is trainable when it did not diverge and its final test accuracy exceeds chance by
    ``margin``; NA where the dataset's class count is unknown.
    """
    root = Path(os.path.commonpath([p.resolve() for p in paths]))
    choices, outcomes, epochs, layers, skipped = [], [], {}, {}, []
    jacobians, spectra, steps, distributions = {}, {}, {}, {}
    seen: dict[tuple, str] = {}
    for path in find_jobs(paths):
        job = path.resolve().relative_to(root).as_posix() or "."
        try:
            record = read_job(path)
            twin = seen.setdefault(run_identity(record.choices), job)
            if twin != job:
                raise BadJob(f"the same run as {twin} (equal settings, seed included): counted once")
        except Exception as err:  # one bad job must never stop the analysis
            reason = (str(err) if isinstance(err, BadJob) else f"{type(err).__name__}: {err}").strip()
            reason = reason.splitlines()[0] if reason else type(err).__name__
            log.warning("skipped %s: %s", path, reason)
            skipped.append(Skipped(job, reason))
            continue
        choices.append({"job": job, **record.choices})
        outcomes.append(record.outcome)
        epochs[job], layers[job] = record.epochs, record.layers
        for parts, frame in ((jacobians, record.jacobian), (spectra, record.spectra), (steps, record.steps),
                             (distributions, record.distributions)):
            if frame is not None:
                parts[job] = frame
    if not choices:
        return Tables(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), None, skipped, [], root)
    choices = pd.DataFrame(choices)
    names = choices.pop(PRESETS).dropna() if PRESETS in choices else []
    presets = list(dict.fromkeys(g for listed in names for g in listed.split()))
    if "model" not in choices:  # every job so far trained an MLP
        choices["model"] = "mlp"
    choices = _order_columns(choices)
    outcomes = pd.DataFrame(outcomes)
    trainable = (outcomes["status"] != "diverged") & (outcomes["final_test_acc"] > outcomes["chance"] + margin)
    outcomes.insert(1, "trainable", trainable.astype("boolean").mask(outcomes["chance"].isna()))
    unfiltered = pd.concat([choices, outcomes], axis=1)
    runs = apply_filters(unfiltered, filters or {})
    keys = varied_keys(runs, list(choices.columns))
    runs = _labels(_sort(runs, keys), keys)
    presets = [g for g in presets if g in keys]
    if presets:  # the arm's name: its preset choices
        runs["arm"] = runs[presets].astype(str).agg(", ".join, axis=1)
    drawn = ({"activation", "init", "depth", "seed", *presets}
             | {k for k in keys if k.split(".")[0] in ("activation", "init")})
    id_cols = ["job", *GROUPS, "activation_label", "init_label", "model_label", "depth", "seed",
               *[k for k in keys if k not in GROUPS and k not in ("depth", "seed")]]
    id_cols = list(dict.fromkeys(c for c in id_cols if c in runs))

    kept_jobs = set(runs["job"])

    def long(parts: dict) -> pd.DataFrame:
        kept = [(job, frame) for job, frame in parts.items() if job in kept_jobs]
        if not kept:
            return pd.DataFrame()
        frame = pd.concat([f.assign(job=job) for job, f in kept], ignore_index=True)
        return runs[id_cols].merge(frame, on="job")

    def optional(parts: dict) -> Optional[pd.DataFrame]:
        frame = long(parts)
        return None if frame.empty else frame

    return Tables(runs, long(epochs), long(layers), optional(jacobians), skipped, keys, root,
                  [k for k in keys if k not in drawn], margin, optional(spectra), optional(steps),
                  optional(distributions), presets, [c for c in choices.columns if c not in ("job", "overrides")],
                  unfiltered)


def _sort(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rank = {g: runs[g].map(lambda v, known=known: known.index(v) if v in known else len(known))
            for g, known in (("activation", ACTIVATIONS), ("init", INITS))}
    by = ["model", "_activation", "activation", "_init", "init", "depth", *[k for k in keys if "." in k], "seed", "job"]
    ranked = runs.assign(_activation=rank["activation"], _init=rank["init"])
    return runs.loc[ranked.sort_values([c for c in by if c in ranked]).index].reset_index(drop=True)


def _order_columns(choices: pd.DataFrame) -> pd.DataFrame:
    """job, group names, top-level settings, group parameters (``init.factor``), overrides."""
    first = ["job", *[g for g in GROUPS if g in choices]]
    rest = [c for c in choices.columns if c not in first and c != "overrides"]
    flat = [c for c in rest if "." not in c]
    dotted = sorted(c for c in rest if "." in c)
    return choices[first + flat + dotted + (["overrides"] if "overrides" in choices else [])]
