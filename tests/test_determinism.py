"""Determinism on CPU: the same seed and config give the same records; another seed does not.
Also resume: a job continued from its checkpoint records what an uninterrupted one does.
"""

from __future__ import annotations

import json

import pytest

from conftest import compose_config, read_csv, read_json, run_job

JOB = ["depth=3", "model.width=32", "epochs=2", "batch_size=64", "optimizer=momentum", "dataset.val_size=100",
       "probe_size=300", "threads=1", "device=cpu"]
WALL_CLOCK = {"epoch_time"}


def records(job_dir):
    epochs = [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in read_csv(job_dir / "epochs.csv")]
    return epochs, read_csv(job_dir / "layers.csv")


def run_in(path, *overrides):
    path.mkdir(parents=True, exist_ok=True)
    result = run_job(compose_config(*JOB, *overrides), path)
    return result, records(path)


@pytest.fixture(scope="module")
def seed0(tmp_path_factory):
    return run_in(tmp_path_factory.mktemp("seed0a"), "seed=0")


def test_same_seed_same_records(seed0, tmp_path):
    result_a, (epochs_a, layers_a) = seed0
    result_b, (epochs_b, layers_b) = run_in(tmp_path, "seed=0")
    assert len(epochs_a) == 3 and len(layers_a) == 3 * 4
    assert set(epochs_a[0]) >= {"train_loss", "val_loss", "test_acc", "lr"}
    assert epochs_a == epochs_b  # every column but epoch_time, compared as the exact strings written
    assert layers_a == layers_b
    for result in (result_a, result_b):
        result["final"].pop("epoch_time")
        for key in ("wall_time", "train_time"):
            result.pop(key)
    assert result_a == result_b


def test_different_seed_different_records(seed0, tmp_path):
    _, (epochs_a, layers_a) = seed0
    _, (epochs_b, layers_b) = run_in(tmp_path, "seed=1")
    # init weights, batch order and probe batch all change: every epoch's losses and every layer's statistics
    for a, b in zip(epochs_a, epochs_b):
        assert a["train_loss"] != b["train_loss"] and a["test_loss"] != b["test_loss"]
    for a, b in zip(layers_a, layers_b):
        assert a["weight_norm"] != b["weight_norm"] and a["grad_norm"] != b["grad_norm"]


def test_resume_from_checkpoint_matches_an_uninterrupted_run(seed0, tmp_path):
    """Stop after epoch 1 (keep the checkpoint, drop result.json as a killed job would have none),
    then rerun with epochs=2 in the same folder: it continues, and the records are the same."""
    run_in(tmp_path, "seed=0", "epochs=1", "checkpoint=last")
    (tmp_path / "result.json").unlink()
    result, (epochs, layers) = run_in(tmp_path, "seed=0")
    _, (epochs_ref, layers_ref) = seed0
    assert epochs == epochs_ref and layers == layers_ref
    assert result["status"] == "completed" and not (tmp_path / "checkpoint.pt").exists()


def test_finished_job_is_skipped_and_resume_false_reruns_it(seed0, tmp_path):
    run_in(tmp_path, "seed=0", "epochs=0")
    before = (tmp_path / "epochs.csv").read_text()
    result = run_job(compose_config(*JOB, "seed=0", "epochs=0"), tmp_path)
    assert result == read_json(tmp_path / "result.json") and (tmp_path / "epochs.csv").read_text() == before
    # resume=false reruns into the same folder (here with 2 epochs) and rewrites every file
    result = run_job(compose_config(*JOB, "seed=0", "resume=false"), tmp_path)
    assert result["final"]["epoch"] == 2
    assert records(tmp_path) == seed0[1]
    assert json.loads((tmp_path / "result.json").read_text())["final"]["epoch"] == 2
