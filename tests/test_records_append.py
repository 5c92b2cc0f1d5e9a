"""Append-only records: each epoch appends its rows; the checkpoint holds only committed lengths.

A job killed while appending leaves at most a half row after the last committed byte; a resume
cuts every CSV back to the lengths its checkpoint committed, so the files a resumed job finishes
equal an uninterrupted run's (tests/test_resume.py checks that end to end with kill -9).
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import compose_config, read_csv, run_job
from initlab.config import ConfigError
from initlab.records import DISTRIBUTIONS_CSV, EPOCHS_CSV, JACOBIAN_CSV, LAYERS_CSV, STEPS_CSV, JobRecords, \
    remove_temporaries, write_csv_atomic


def _epoch(epoch: int) -> dict:
    return {"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "train_acc": 0.5, "test_loss": 0.25, "test_acc": 0.5,
            "epoch_time": 0.125 * epoch, "lr": 0.1, "grad_norm": None if epoch == 0 else 2.0 ** -epoch}


def test_appended_files_equal_files_written_whole(tmp_path):
    (tmp_path / "a").mkdir()
    rec = JobRecords(tmp_path / "a")
    rows = [_epoch(e) for e in range(4)]
    for row in rows:
        rec.append(row, [], [], [])
    stamped = [{**row, "attempt": 0} for row in rows]  # every row ends with the attempt (0 without restarts)
    write_csv_atomic(tmp_path / "whole.csv", rec.files[EPOCHS_CSV].columns, stamped)
    assert (tmp_path / "a" / EPOCHS_CSV).read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert rec.files[EPOCHS_CSV].columns[-1] == "attempt"
    assert rec.row_counts() == {EPOCHS_CSV: 4}, "files never appended to are not listed"
    assert rec.train_time == 0.125 * (1 + 2 + 3) and rec.last_epoch == stamped[-1]


def test_restore_cuts_half_written_rows_and_files_created_after_the_checkpoint(tmp_path):
    rec = JobRecords(tmp_path)
    rec.attempt = 1  # a restart: its rows say so, and so does the state a resume comes back to
    for e in range(2):
        rec.append(_epoch(e), [], [], [])
    state = rec.state()
    committed = (tmp_path / EPOCHS_CSV).read_bytes()
    rec.append(_epoch(2), [], [{"epoch": 2, "kind": "hidden"}], [])
    with open(tmp_path / EPOCHS_CSV, "ab") as f:
        f.write(b"3,0.25,0.5,0.2")  # a kill in the middle of the next row
    resumed = JobRecords(tmp_path)
    resumed.restore(state)
    assert (tmp_path / EPOCHS_CSV).read_bytes() == committed
    assert not (tmp_path / JACOBIAN_CSV).exists(), "no Jacobian row was committed"
    assert resumed.row_counts() == {EPOCHS_CSV: 2} and resumed.last_epoch == {**_epoch(1), "attempt": 1}
    resumed.append(_epoch(2), [], [], [])
    rows = list(csv.DictReader(io.StringIO((tmp_path / EPOCHS_CSV).read_text())))
    assert [(int(r["epoch"]), int(r["attempt"])) for r in rows] == [(0, 1), (1, 1), (2, 1)]


def test_steps_and_distributions_are_cut_back_like_the_others(tmp_path):
    """steps.csv and distributions.csv are committed per epoch, counted in row_counts, and cut
    back on restore; a checkpoint that does not list them (written before they existed) had
    none committed."""
    rec = JobRecords(tmp_path)
    step = {"step": 1, "epoch": 1, "loss": 0.5, "lr": 0.1, "site": "acts.0", "layer": 1, "weight_norm": 2.0,
            "grad_norm": 0.25, "bias_grad_norm": 0.125, "attempt": 0}
    rec.append(_epoch(1), [], [], [])
    rec.append_rows(STEPS_CSV, [step])
    state = rec.state()
    committed = (tmp_path / STEPS_CSV).read_bytes()
    rec.append_rows(STEPS_CSV, [{**step, "step": 2}])
    rec.append_rows(DISTRIBUTIONS_CSV, [{"epoch": 2, "site": "acts.0", "kind": "hidden", "index": 0, "layer": 1,
                                         "tensor": "act", "stat": "q50", "value": 0.5, "attempt": 0}])
    assert rec.row_counts() == {EPOCHS_CSV: 1, STEPS_CSV: 2, DISTRIBUTIONS_CSV: 1}
    JobRecords(tmp_path).restore(state)
    assert (tmp_path / STEPS_CSV).read_bytes() == committed and not (tmp_path / DISTRIBUTIONS_CSV).exists()
    older = {**state, "files": {k: v for k, v in state["files"].items() if k not in (STEPS_CSV, DISTRIBUTIONS_CSV)}}
    JobRecords(tmp_path).restore(older)
    assert not (tmp_path / STEPS_CSV).exists()


def test_the_checkpoint_carries_lengths_not_rows(tmp_path):
    cfg = compose_config("depth=2", "model.width=8", "epochs=2", "checkpoint=last", "threads=1", "device=cpu",
                         "probe_size=100")
    result = run_job(cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    files = state["records"]["files"]
    assert files[LAYERS_CSV] == (len(read_csv(tmp_path / LAYERS_CSV)), (tmp_path / LAYERS_CSV).stat().st_size)
    assert files[EPOCHS_CSV][0] == 3 == result["rows"][EPOCHS_CSV]
    assert set(state["records"]) == {"files", "last_epoch", "train_time", "attempt"}


def test_a_checkpoint_that_carries_rows_is_refused_in_one_line(tmp_path):
    """A checkpoint of the format before appends (every row inside it) cannot be continued."""
    cfg = compose_config("depth=2", "model.width=8", "epochs=1", "checkpoint=last", "threads=1", "device=cpu",
                         "probe_size=100")
    run_job(cfg, tmp_path)
    (tmp_path / "result.json").unlink()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    state["records"] = {"epochs": [], "layers": [], "jacobian": [], "singular_values": []}
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="resume=false starts the job afresh"):
        run_job(compose_config("depth=2", "model.width=8", "epochs=2", "threads=1", "device=cpu", "probe_size=100"),
                tmp_path)


def test_a_write_killed_before_its_rename_leaves_a_temporary_that_the_owner_removes(tmp_path):
    """kill -9 between an atomic write's temporary and its rename leaves ``.<name>.<8 chars>.tmp``
    (CI once found ``.checkpoint.pt._b9xm4ae.tmp`` beside a resumed job's files); the real file
    is untouched, and remove_temporaries deletes exactly such siblings, not a user's files."""
    (tmp_path / "checkpoint.pt").write_bytes(b"committed")
    writer = ("import sys, time\nfrom initlab.records import _atomic_write\n"
              "def half(f):\n    f.write(b'half'); f.flush(); print('writing', flush=True); time.sleep(600)\n"
              "_atomic_write(sys.argv[1], half)\n")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path / "checkpoint.pt")],
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"writing\n"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "checkpoint.pt")
    assert len(left) == 1 and left[0].startswith(".checkpoint.pt.") and left[0].endswith(".tmp"), left
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"committed"
    kept = [".notes.tmp", "notes.abcdefgh.tmp", ".cache"]  # not an atomic write's temporary
    for name in kept:
        (tmp_path / name).write_text("mine")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".epochs.csv.abcdefgh.tmp").write_text("another folder's")
    assert remove_temporaries(tmp_path) == left
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoint.pt", "sub", *kept])
    assert (tmp_path / "sub" / ".epochs.csv.abcdefgh.tmp").exists()
    assert remove_temporaries(tmp_path / "absent") == []
