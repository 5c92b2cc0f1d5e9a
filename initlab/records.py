"""The on-disk format of one job: file and column names, appended CSVs and atomic writes.

The CSVs grow by appending each epoch's rows (then fsync), so an epoch costs its own rows, not
a rewrite of every earlier one. What counts is what was committed: the byte length and row count
of each CSV go into the checkpoint after each epoch and into ``result.json`` at the end; a
resumed job first truncates each CSV to its checkpoint's length, so rows a killed job half wrote
are never read. JSON files and the checkpoint are written to a temporary sibling and renamed
into place (a writer killed before the rename leaves its ``.<name>.<8 characters>.tmp`` sibling,
which the folder's next owner removes: ``remove_temporaries``). ``result.json`` is written last;
its presence marks a finished job (its ``rows`` tell readers how many rows each CSV holds). This module imports no torch, so the analysis side
can read the format without the training stack.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from initlab.config import ConfigError


EPOCHS_CSV = "epochs.csv"
LAYERS_CSV = "layers.csv"
RESULT_JSON = "result.json"
JACOBIAN_CSV = "jacobian.csv"
JACOBIAN_SV_CSV = "jacobian_sv.csv"
STEPS_CSV = "steps.csv"
DISTRIBUTIONS_CSV = "distributions.csv"
CHECKPOINT = "checkpoint.pt"
BEST_WEIGHTS = "best.pt"  # the best epoch's model.state_dict() (checkpoint=best|both)
SWEEP_JSON = "sweep.json"  # in a sweep folder (initlab.callbacks): the latest sweep's id, job total and start time
LEDGER = ".progress"  # in a sweep folder: <sweep id>/<job num>.json per ended job (initlab.callbacks)
RECORD_FILES = (RESULT_JSON, CHECKPOINT, BEST_WEIGHTS, EPOCHS_CSV, LAYERS_CSV, JACOBIAN_CSV, JACOBIAN_SV_CSV, STEPS_CSV,
                DISTRIBUTIONS_CSV)

PROBE_COLUMNS = ("preact_mean", "preact_std", "preact_sq", "act_mean", "act_std", "frac_zero", "frac_dead",
                 "frac_saturated", "weight_norm", "grad_norm", "bias_grad_norm", "delta_rms")
JACOBIAN_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
JACOBIAN_SUMMARY_COLUMNS = ("n_inputs", "n_sv", "mean_sq_sv", "var_sq_sv", "sv_min", "sv_max", "sv_std") + tuple(
    f"sv_q{int(q * 100):02d}" for q in JACOBIAN_QUANTILES)
EPOCH_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_time", "lr")
VAL_COLUMNS = ("val_loss", "val_acc")
GRAD_COLUMNS = ("grad_norm",)  # total gradient norm per step, the epoch's mean; after the others
PREDICTED_COLUMNS = ("q_pred", "delta_rms_pred")  # mean-field theory, epoch 0 only
SITE_COLUMNS = ("site", "kind", "index")  # where the row was measured (initlab.measure.probes)
LAYER_COLUMNS = ("epoch", "layer") + PROBE_COLUMNS + ("grad_norm_train",) + PREDICTED_COLUMNS + SITE_COLUMNS
JACOBIAN_COLUMNS = ("epoch", "kind") + JACOBIAN_SUMMARY_COLUMNS + ("mean_sq_sv_pred",)
JACOBIAN_SV_COLUMNS = ("epoch", "kind", "sv")
# one row per (logged optimizer step, measured weight); JobRecords appends ``attempt`` to every CSV
STEPS_COLUMNS = ("step", "epoch", "loss", "lr", "site", "layer", "weight_norm", "grad_norm", "bias_grad_norm")
DISTRIBUTIONS_COLUMNS = ("epoch", "site", "kind", "index", "layer", "tensor", "stat", "bin_lo", "bin_hi", "value")
ATTEMPT = "attempt"  # last column of every CSV: 0, or the restart (early_stopping.restarts) a row is of


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; records are shared like any file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# the names _atomic_write's mkstemp gives: "." + the target's name + "." + 8 of [a-z0-9_] + ".tmp"
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


class FolderInUse(ConfigError):
    """Another live job holds this job folder (``lock_folder``): the refused job must write nothing there."""


def lock_folder(directory: Path) -> Optional[int]:
    """Make the existing ``directory`` this job's alone: an exclusive non-blocking
    ``flock`` on the directory itself (no file added), held until ``unlock_folder``; a killed
    process's lock goes with it. Two jobs that map to one folder (two sweeps into one folder at
    once, or an optimizing sweeper's repeated trial; a sweep whose own jobs would share a folder is
    refused before it runs: initlab.sweeps.check_job_folders) would otherwise append to the same files.
    Returns the descriptor, or None where the filesystem has no such locks (some network mounts).
    Raises FolderInUse where another open descriptor holds the lock, in this process or another."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderInUse(f"{directory} is in use by another running job (another sweep or run writing into this "
                          f"folder): wait for it to end or choose another hydra.sweep.dir / hydra.run.dir") from None
    except OSError:
        os.close(fd)
        return None
    return fd


def unwritable(key: str, folder: Optional[str]) -> Optional[str]:
    """One line where the folder ``folder`` of a run, sweep or job (``key`` names it)
    cannot be created: a trial folder in its nearest existing ancestor is made and removed again
    (permissions, read-only or pseudo file systems such as /proc), so nothing is left behind."""
    if folder is None:
        return None
    path = Path(folder).absolute()
    ancestor = next(p for p in (path, *path.parents) if p.exists())
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(f"{ancestor} is a file")
        Path(tempfile.mkdtemp(dir=ancestor, prefix=".initlab-")).rmdir()
    except OSError as err:
        return f"{key}={folder}: cannot create it here ({err.strerror or err}); valid: a folder this user can write"
    return None


def unlock_folder(fd: Optional[int]) -> None:
    """Release ``lock_folder``'s lock (None: nothing to release)."""
    if fd is not None:
        os.close(fd)


def remove_temporaries(directory: Path) -> list[str]:
    """Delete the temporary siblings that atomic writes killed before their rename left in
    ``directory`` (not below it); returns their names. Call it only from the process that owns
    the folder (a job in its job folder, a sweep in its sweep folder): another writer's temporary
    is live until renamed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = sorted(p.name for p in directory.iterdir() if _TEMPORARY.fullmatch(p.name) and p.is_file())
    for name in stale:
        (directory / name).unlink(missing_ok=True)
    return stale


def write_bytes_atomic(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def _csv_text(columns: Iterable[str], rows: Iterable[Mapping[str, Any]], header: bool) -> bytes:
    """Rows as dicts; missing values are written as empty fields, floats with full precision."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="raise")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in row.items()})
    return buf.getvalue().encode()


def write_csv_atomic(path: Path, columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A whole CSV (header and rows), replacing ``path`` atomically."""
    write_bytes_atomic(path, _csv_text(columns, rows, header=True))


def _strict(value: Any) -> Any:
    """Non-finite floats (a diverged loss, an infinite depth scale) become null: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_json_atomic(path: Path, obj: Mapping[str, Any]) -> None:
    write_bytes_atomic(path, (json.dumps(_strict(obj), indent=2, allow_nan=False) + "\n").encode())


def clear(job_dir: Path) -> None:
    """Remove a previous run's records (a fresh start in a used folder), result.json first, so
    a reader never takes the old result for the new rows. Raises ConfigError where one of their
    names is a folder (not ours to delete)."""
    for name in RECORD_FILES:
        path = Path(job_dir) / name
        if path.is_dir():
            raise ConfigError(f"{name} in {job_dir} is a folder, where the job writes its own {name}: move it away, "
                              f"or use another folder")
        path.unlink(missing_ok=True)


@dataclass
class AppendedCSV:
    """One CSV that grows by appending; ``rows``/``size`` are what has been committed (fsynced)."""

    path: Path
    columns: tuple[str, ...]
    rows: int = 0
    size: int = 0

    def append(self, rows: list[Mapping[str, Any]]) -> None:
        """Append ``rows`` (the header first if the file is new) and fsync them."""
        if not rows:
            return
        data = _csv_text(self.columns, rows, header=self.size == 0)
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.rows, self.size = self.rows + len(rows), self.size + len(data)

    def restore(self, rows: int, size: int) -> None:
        """Go back to a committed state: cut anything written after it (a killed epoch's rows)."""
        self.rows, self.size = rows, size
        if size == 0:
            self.path.unlink(missing_ok=True)
        else:
            os.truncate(self.path, size)


class JobRecords:
    """The CSVs of one job, appended to epoch by epoch.

    ``state()`` (committed row counts and byte lengths, the last epochs.csv row and the summed
    epoch times) goes into the checkpoint; ``restore(state)`` truncates the files to it. The rows
    themselves live only in the files.
    """

    def __init__(self, job_dir: Path, epoch_columns: tuple[str, ...] = EPOCH_COLUMNS + GRAD_COLUMNS):
        job_dir = Path(job_dir)
        self.files = {name: AppendedCSV(job_dir / name, columns + (ATTEMPT,)) for name, columns in (
            (EPOCHS_CSV, tuple(epoch_columns)), (LAYERS_CSV, LAYER_COLUMNS),
            (JACOBIAN_CSV, JACOBIAN_COLUMNS), (JACOBIAN_SV_CSV, JACOBIAN_SV_COLUMNS),
            (STEPS_CSV, STEPS_COLUMNS), (DISTRIBUTIONS_CSV, DISTRIBUTIONS_COLUMNS))}
        self.last_epoch: dict = {}
        self.train_time = 0.0
        self.attempt = 0

    def append(self, epoch: Mapping[str, Any], layers: list[dict], jacobian: list[dict],
               singular_values: list[dict]) -> None:
        """One epoch's rows, appended and fsynced file by file; each gets the ``attempt`` column."""
        stamp = {ATTEMPT: self.attempt}
        self.files[EPOCHS_CSV].append([{**epoch, **stamp}])
        self.files[LAYERS_CSV].append([{**row, **stamp} for row in layers])
        self.files[JACOBIAN_CSV].append([{**row, **stamp} for row in jacobian])
        self.files[JACOBIAN_SV_CSV].append([{**row, **stamp} for row in singular_values])
        self.last_epoch = {**epoch, **stamp}
        self.train_time += epoch["epoch_time"]

    def append_rows(self, name: str, rows: list[Mapping[str, Any]]) -> None:
        """Rows of one optional file (steps.csv, distributions.csv) for the epoch being recorded,
        with the ``attempt`` column."""
        self.files[name].append([{**row, ATTEMPT: self.attempt} for row in rows])

    def row_counts(self) -> dict[str, int]:
        """Data rows (no header) of each file written, for result.json: readers detect truncation."""
        return {name: f.rows for name, f in self.files.items() if f.size}

    def state(self) -> dict[str, Any]:
        return {"files": {name: (f.rows, f.size) for name, f in self.files.items()},
                "last_epoch": self.last_epoch, "train_time": self.train_time, "attempt": self.attempt}

    def restore(self, state: Mapping[str, Any]) -> None:
        for name, f in self.files.items():  # a file the checkpoint does not list had nothing committed
            f.restore(*state["files"].get(name, (0, 0)))
        self.last_epoch, self.train_time = dict(state["last_epoch"]), state["train_time"]
        self.attempt = state.get("attempt", 0)
