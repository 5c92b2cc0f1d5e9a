"""Does a job folder's checkpoint or result belong to the run now asked for?

A folder's records are reused (a checkpoint continued, a finished job skipped) only when the
choices recorded with them agree with the current ones, so records never mix two configurations.
The choices are every setting except ``RUNTIME_KEYS``, which change how a run is executed or
observed (the ``logger``) or what it reports to an optimizing sweeper (the ``objective``), not
what it computes. ``epochs`` is compared apart: a checkpoint may be continued to any ``epochs``
not below the epoch it holds (nothing in a run depends on the total but a cosine schedule without
T_max, whose runs are never continued to other epochs), while a finished job is skipped only for
the ``epochs`` it was run with.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Mapping, Optional

from omegaconf import MISSING as OMEGACONF_MISSING
from omegaconf import OmegaConf

from initlab import records
from initlab.config import SCHEMAS, ConfigError, ExperimentConfig

RUNTIME_KEYS = ("threads", "device", "resume", "checkpoint", "checkpoint_every_s", "logger", "objective")
_MISSING = object()
_SKIPPED: set[str] = set()  # job folders whose job found its result in this process (mark_skipped)


def mark_skipped(job_dir: Path) -> None:
    """Record that the job of ``job_dir`` found its finished result and trained nothing."""
    _SKIPPED.add(str(Path(job_dir).absolute()))


def was_skipped(job_dir: Path) -> bool:
    """Whether this process's job of ``job_dir`` was skipped (``mark_skipped``); forgets it, so a
    later job in the folder (an optimizing sweeper's repeat) is judged afresh. Every launcher
    ends a job (Hydra's ``on_job_end``) in the process that ran it."""
    key = str(Path(job_dir).absolute())
    skipped = key in _SKIPPED
    _SKIPPED.discard(key)
    return skipped


def choices_of(exp: ExperimentConfig) -> dict[str, Any]:
    """Every resolved setting that defines the run (all but RUNTIME_KEYS), as plain JSON: what
    result.json and the checkpoint record as ``choices``."""
    plain = OmegaConf.to_container(OmegaConf.structured(exp), resolve=True, enum_to_str=True)
    return {key: value for key, value in plain.items() if key not in RUNTIME_KEYS}


def flatten(choices: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in choices.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, (list, tuple)) else value
    return flat


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key old -> new`` for every dotted key whose value differs; a key one side lacks shows as
    ``(absent)``. Keys in the current choices' order, then recorded-only keys."""
    old, new = flatten(recorded), flatten(current)
    keys = list(new) + [k for k in old if k not in new]
    return [f"{k} {old.get(k, '(absent)')} -> {new.get(k, '(absent)')}" for k in keys
            if old.get(k, _MISSING) != new.get(k, _MISSING)]


def _with_defaults(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level settings added after a record was written count as their default (an older
    job's ``jacobian_every`` is 0), so records of an older initlab still resume and skip. The
    removed ``scheduler.mode`` of reduce_on_plateau now follows the monitor: a record whose mode
    did so is the same run; one against it (the lr cut while the monitor improved) is another. A
    model of fixed depth (resnet18) recorded the unused top-level depth: its depth is its own."""
    defaults = {f.name: f.default for f in fields(ExperimentConfig)
                if f.default not in (MISSING, OMEGACONF_MISSING) and f.name not in RUNTIME_KEYS}
    out = {**defaults, **recorded}
    model = out.get("model")
    schema = SCHEMAS["model"].get(model.get("name")) if isinstance(model, Mapping) else None
    fixed = getattr(schema, "FIXED_DEPTH", None)
    if fixed is not None:  # resnet18's records held the unused top-level depth before it became 18
        out["depth"] = fixed
    scheduler = out.get("scheduler")
    if isinstance(scheduler, Mapping) and "mode" in scheduler:
        follows = "max" if str(scheduler.get("monitor", "")).endswith("_acc") else "min"
        if scheduler["mode"] == follows:
            out["scheduler"] = {k: v for k, v in scheduler.items() if k != "mode"}
    return out


def check_same_run(what: str, job_dir: Path, recorded: Optional[Mapping[str, Any]],
                   current: Mapping[str, Any], checkpoint_epoch: Optional[int] = None) -> None:
    """Raise ConfigError (one line) unless ``recorded`` choices describe the ``current`` run.

    ``what`` names the record (``checkpoint.pt``, ``result.json``). With ``checkpoint_epoch``
    (a checkpoint) ``epochs`` may differ if it is at least that epoch; without it (a finished
    job) ``epochs`` must be equal.
    """
    fix = "resume=false starts the job afresh (replacing those records), or use another folder"
    if recorded is None:
        raise ConfigError(f"{what} in {job_dir} records no settings to compare (written by an older "
                          f"initlab); {fix}")
    diffs = differences(_with_defaults(recorded), current)
    others = [d for d in diffs if not d.startswith("epochs ")]
    if diffs and not others and schedule_follows_epochs(current):
        raise ConfigError(f"{what} in {job_dir} is of a run of {recorded.get('epochs')} epochs whose cosine lr spans "
                          f"them (scheduler.T_max: null), so it cannot go on to epochs={current['epochs']} as that "
                          f"run; {fix}")
    longer = current["epochs"] > recorded.get("epochs", 0)
    if diffs and not others and checkpoint_epoch is None and longer:
        raise ConfigError(f"{what} in {job_dir} is of a finished run with epochs={recorded.get('epochs')} that kept no "
                          f"checkpoint to go on from (a run kept with checkpoint=last or both continues to more "
                          f"epochs); {fix}")
    if checkpoint_epoch is not None:
        if current["epochs"] < checkpoint_epoch:
            raise ConfigError(f"epochs={current['epochs']} but {what} in {job_dir} is after epoch "
                              f"{checkpoint_epoch}; ask for epochs >= {checkpoint_epoch}, or {fix}")
        diffs = others
    if diffs:
        raise ConfigError(f"{what} in {job_dir} is of a run with other settings ({'; '.join(diffs)}); {fix}")


def schedule_follows_epochs(choices: Mapping[str, Any]) -> bool:
    """Whether the run's lr at every epoch depends on ``epochs``: cosine annealing without T_max
    spans the epochs after warmup (initlab.train.schedule), so a run continued to more epochs
    would not be the longer run."""
    scheduler = choices.get("scheduler") or {}
    return scheduler.get("name") == "cosine" and scheduler.get("T_max") is None


def extends(recorded: Optional[Mapping[str, Any]], current: Mapping[str, Any]) -> bool:
    """Whether ``current`` is the ``recorded`` finished run asked for with more epochs (and
    nothing else changed, the lr schedule included): such a run continues from a kept checkpoint
    instead of being refused."""
    if recorded is None or current["epochs"] <= recorded.get("epochs", current["epochs"]):
        return False
    if schedule_follows_epochs(current):
        return False
    return all(d.startswith("epochs ") for d in differences(_with_defaults(recorded), current))


def read_finished(job_dir: Path, current: Mapping[str, Any]) -> tuple[Optional[dict], bool]:
    """(result.json's content, whether the run ``current`` extends it) for a folder whose job
    finished, or (None, False) where it has no result.json. A finished run that ended early and
    is asked for with other epochs that still reach its end (``ends_alike``) is finished as it is;
    one that completed, kept its checkpoint and is asked for only more epochs (``extends``) is
    extended; otherwise its choices must be ``current``'s (``check_same_run``: ConfigError)."""
    path = job_dir / records.RESULT_JSON
    if not path.is_file():
        return None, False
    finished = json.loads(path.read_text())
    if ends_alike(finished, current):
        return finished, False  # the run asked for diverges or stops at the same epoch: this is its result
    _refuse_restarted(finished, current, job_dir)
    _refuse_ending_sooner(finished, current, job_dir)
    extending = (finished.get("status") == "completed" and (job_dir / records.CHECKPOINT).is_file()
                 and extends(finished.get("choices"), current))
    if not extending:
        check_same_run(records.RESULT_JSON, job_dir, finished.get("choices"), current)
    return finished, extending


def _refuse_restarted(finished: Mapping[str, Any], current: Mapping[str, Any], job_dir: Path) -> None:
    """ConfigError for a run that diverged or stopped early after a restart, asked for other epochs
    only: ``ended_early`` does not take it for that run (the other run might not restart at all),
    and it keeps no checkpoint to go on from when it diverged. The refusal said "kept no checkpoint
    (a run kept with checkpoint=last or both continues ...)", advice that cannot help here."""
    recorded = finished.get("choices")
    attempts = finished.get("final_attempt", 0)
    if not attempts or recorded is None or finished.get("status") == "completed" and not finished.get("stopped_epoch"):
        return
    diffs = differences(_with_defaults(recorded), current)
    if not diffs or not all(d.startswith("epochs ") for d in diffs):
        return
    how = (f"diverged at epoch {finished['diverged_epoch']}" if finished.get("diverged_epoch") is not None
           else f"stopped early at epoch {finished.get('stopped_epoch')}")
    raise ConfigError(f"result.json in {job_dir} is of a run that {how} in attempt {attempts} (counted from 0, "
                      f"as the log and the attempt column; early_stopping.restarts): with epochs={current['epochs']} "
                      f"its attempts could end otherwise (attempt 0 need not restart), so it is not that run; "
                      f"resume=false starts the job afresh (replacing those records), or use another folder")


def _refuse_ending_sooner(finished: Mapping[str, Any], current: Mapping[str, Any], job_dir: Path) -> None:
    """ConfigError for a run that ended early (``ended_early``) asked for too few epochs to reach
    that end, nothing else changed: the run asked for completes without it (early stopping's
    patience running out at the last epoch is no stop), a run its records do not hold. The refusal
    said "other settings (epochs 7 -> 6)", naming the epochs of the last request recorded, not the
    epoch the run ended at."""
    how, recorded = ended_early(finished), finished.get("choices")
    if not how or recorded is None or schedule_follows_epochs(current):
        return
    diffs = differences(_with_defaults(recorded), current)
    if diffs and all(d.startswith("epochs ") for d in diffs) and not ends_alike(finished, current):
        diverged = finished.get("diverged_epoch")
        reach = diverged if diverged is not None else finished["stopped_epoch"] + 1
        raise ConfigError(f"result.json in {job_dir} is of a run that {how}: with epochs={current['epochs']} it "
                          f"completes without that end, so it is not that run (epochs >= {reach} is); resume=false "
                          f"starts the job afresh (replacing those records), or use another folder")


def ended_early(finished: Mapping[str, Any]) -> Optional[str]:
    """How a finished run (result.json's content) ended before its last epoch, or None: "diverged
    at epoch 3" or "stopped early at epoch 7" (early stopping, its best weights restored or not).
    Such a run asked for other epochs that still reach its end, nothing else changed and no lr
    schedule spanning the epochs (``ends_alike``), is that run: every epoch up to the end is the
    same, and the end comes at the same epoch. A diverged run keeps no checkpoint, so refusing it
    would leave no way on. Not after a restart (``early_stopping.restarts``): an attempt that ran
    to its last epoch and then restarted would run on in the longer run, and might not restart at
    all."""
    if finished.get("final_attempt", 0) > 0:
        return None
    if finished.get("diverged_epoch") is not None:
        return f"diverged at epoch {finished['diverged_epoch']}"
    if finished.get("stopped_epoch") is not None:
        return f"stopped early at epoch {finished['stopped_epoch']}"
    return None


def ends_alike(finished: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether the run ``current`` would end as the finished one (result.json's content) did: it
    ended early (``ended_early``), ``current`` differs from it in ``epochs`` alone (no lr schedule
    spanning the epochs) and still reaches that end: the epoch it diverged at, or an epoch after
    the one early stopping stopped at (patience running out at the last epoch is no stop). Fewer
    epochs than it ran are that run too: after a longer request was skipped (and recorded), the
    first request was refused as "other settings (epochs 6 -> 3)"."""
    recorded = finished.get("choices")
    if not ended_early(finished) or recorded is None or schedule_follows_epochs(current):
        return False
    if not all(d.startswith("epochs ") for d in differences(_with_defaults(recorded), current)):
        return False
    if finished.get("diverged_epoch") is not None:
        return current["epochs"] >= finished["diverged_epoch"]
    return current["epochs"] > finished["stopped_epoch"]


def check_folder(exp: ExperimentConfig, job_dir: Path) -> None:
    """ConfigError (one line) where the job ``exp`` would be refused by its folder ``job_dir``,
    checked before Hydra starts the job: Hydra rewrites the folder's ``.hydra/`` (config,
    overrides) for every run asked into it, also for one initlab then refuses, and a job's model
    is rebuilt from those files (initlab.train.saved). Refused: a folder another running job holds
    (records.FolderInUse), and with ``resume=true`` a result.json (``read_finished``) or a
    checkpoint of a run with other settings. A checkpoint that cannot be read is left to the job."""
    if not job_dir.is_dir():
        return
    records.unlock_folder(records.lock_folder(job_dir))
    if not exp.resume:
        return
    current = choices_of(exp)
    finished, _ = read_finished(job_dir, current)
    checkpoint = job_dir / records.CHECKPOINT
    if finished is None and checkpoint.is_file():
        import torch

        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - the job loads it again and says why it cannot
            return
        if not isinstance(saved, dict):  # no train state either: the job says so
            return
        check_same_run(records.CHECKPOINT, job_dir, saved.get("choices"), current,
                       checkpoint_epoch=saved.get("epoch", 0))
