"""The on-disk format of one job: file and column names, and atomic writes.

Every file is written to a temporary sibling and renamed into place, so a reader (analyze.py, a
restarted sweep) sees either the previous complete version or the new one, never half a file.
``result.json`` is written last; its presence marks a finished job. This module imports no
torch, so the analysis side can read the format without the training stack.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping


EPOCHS_CSV = "epochs.csv"
LAYERS_CSV = "layers.csv"
RESULT_JSON = "result.json"
JACOBIAN_CSV = "jacobian.csv"
JACOBIAN_SV_CSV = "jacobian_sv.csv"
CHECKPOINT = "checkpoint.pt"
RECORD_FILES = (RESULT_JSON, CHECKPOINT, EPOCHS_CSV, LAYERS_CSV, JACOBIAN_CSV, JACOBIAN_SV_CSV)

PROBE_COLUMNS = ("preact_mean", "preact_std", "preact_sq", "act_mean", "act_std", "frac_zero", "frac_dead",
                 "frac_saturated", "weight_norm", "grad_norm", "bias_grad_norm", "delta_rms")
JACOBIAN_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
JACOBIAN_SUMMARY_COLUMNS = ("n_inputs", "n_sv", "mean_sq_sv", "var_sq_sv", "sv_min", "sv_max", "sv_std") + tuple(
    f"sv_q{int(q * 100):02d}" for q in JACOBIAN_QUANTILES)
EPOCH_COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_time", "lr")
VAL_COLUMNS = ("val_loss", "val_acc")
PREDICTED_COLUMNS = ("q_pred", "delta_rms_pred")  # mean-field theory, epoch 0 only
LAYER_COLUMNS = ("epoch", "layer") + PROBE_COLUMNS + ("grad_norm_train",) + PREDICTED_COLUMNS
JACOBIAN_COLUMNS = ("epoch", "kind") + JACOBIAN_SUMMARY_COLUMNS + ("mean_sq_sv_pred",)
JACOBIAN_SV_COLUMNS = ("epoch", "kind", "sv")


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


def write_bytes_atomic(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def write_csv_atomic(path: Path, columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Rows as dicts; missing values are written as empty fields, floats with full precision."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in row.items()})
    write_bytes_atomic(path, buf.getvalue().encode())


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
    a reader never takes the old result for the new rows."""
    for name in RECORD_FILES:
        (Path(job_dir) / name).unlink(missing_ok=True)


@dataclass
class JobRecords:
    """The rows of one job so far, rewritten whole and atomically after every epoch.

    ``state()`` goes into the checkpoint, so a resumed job carries on with the same rows.
    """

    job_dir: Path
    epoch_columns: tuple[str, ...] = EPOCH_COLUMNS
    epochs: list[dict] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    jacobian: list[dict] = field(default_factory=list)
    singular_values: list[dict] = field(default_factory=list)

    def write(self) -> None:
        write_csv_atomic(self.job_dir / EPOCHS_CSV, self.epoch_columns, self.epochs)
        write_csv_atomic(self.job_dir / LAYERS_CSV, LAYER_COLUMNS, self.layers)
        if self.jacobian:
            write_csv_atomic(self.job_dir / JACOBIAN_CSV, JACOBIAN_COLUMNS, self.jacobian)
            write_csv_atomic(self.job_dir / JACOBIAN_SV_CSV, JACOBIAN_SV_COLUMNS, self.singular_values)

    def row_counts(self) -> dict[str, int]:
        """Data rows (no header) of each file written, for result.json: readers detect truncation."""
        counts = {EPOCHS_CSV: len(self.epochs), LAYERS_CSV: len(self.layers)}
        if self.jacobian:
            counts.update({JACOBIAN_CSV: len(self.jacobian), JACOBIAN_SV_CSV: len(self.singular_values)})
        return counts

    def state(self) -> dict[str, list[dict]]:
        return {"epochs": self.epochs, "layers": self.layers, "jacobian": self.jacobian,
                "singular_values": self.singular_values}

    def restore(self, state: Mapping[str, list[dict]]) -> None:
        self.epochs, self.layers = state["epochs"], state["layers"]
        self.jacobian, self.singular_values = state["jacobian"], state["singular_values"]
