"""logger=tensorboard: the event files, read back with TensorBoard's own reader, hold the records.

Scalars equal epochs.csv and layers.csv (as float32, TensorBoard's scalar type), one point per
epoch; histograms count the finite entries of the tensors they summarize; the hparams session
holds the run's choices and the final metrics of result.json; a resumed run's files read back
as an uninterrupted run's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from torch.utils.tensorboard import SummaryWriter

from conftest import compose_config, read_json, run_job
from initlab.config import to_experiment
from initlab.data import load_data
from initlab.inits import initialize
from initlab.models import build_model
from initlab.models.sites import probing
from initlab.train.job import _probe_batch
from initlab.train.tensorboard import HISTOGRAM_BINS, SCALARS, SITE_SCALARS, TB_DIR, add_histogram, hparam_values

TINY = ["threads=1", "device=cpu", "probe_size=40", "batch_size=64"]
MLP = [*TINY, "depth=2", "model.width=8", "dataset.val_size=100", "optimizer.lr=0.05"]
TRANSFORMER = [*TINY, "model=transformer", "dataset=majority", "dataset.n_train=120", "dataset.n_test=40",
               "depth=1", "model.d_model=8", "model.nhead=2", "model.dim_feedforward=16"]


def read_events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator) -> dict[str, list[tuple[int, float]]]:
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def hparams_of(acc: EventAccumulator) -> dict:
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)[hparams_metadata.SESSION_START_INFO_TAG]
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


def f32(x) -> float:
    return float(np.float32(x))


def check_against_records(job: Path, model_numel: dict[str, int]) -> EventAccumulator:
    """Every scalar equals its record; histograms cover every parameter and site each epoch."""
    acc = read_events(job / TB_DIR)
    logged = scalars(acc)
    epochs = pd.read_csv(job / "epochs.csv")
    layers = pd.read_csv(job / "layers.csv")
    result = read_json(job / "result.json")
    steps = epochs["epoch"].tolist()
    for key, tag in SCALARS.items():
        if key not in epochs or epochs[key].isna().all():
            assert tag not in logged, tag
            continue
        column = epochs[key].dropna()
        assert logged[tag] == [(int(epochs["epoch"][i]), f32(v)) for i, v in column.items()], tag
    for column in SITE_SCALARS:
        for site, rows in layers.groupby("site", sort=False):
            present = rows[column].dropna()
            tag = f"{column}/{site}"
            if present.empty:
                assert tag not in logged, tag
            else:
                assert logged[tag] == [(int(rows["epoch"][i]), f32(v)) for i, v in present.items()], tag
    expected_final = {f"final/{k}": [(result["final"]["epoch"], f32(v))] for k, v in result["final"].items()
                      if k.endswith(("_loss", "_acc"))}
    assert {t: v for t, v in logged.items() if t.startswith("final/")} == expected_final

    histograms = set(acc.Tags()["histograms"])
    sites = layers.loc[layers["kind"] != "weight", "site"].unique()
    assert histograms == ({f"weight/{p}" for p in model_numel} | {f"grad/{p}" for p in model_numel}
                          | {f"preact/{s}" for s in sites} | {f"act/{s}" for s in sites})
    for name, numel in model_numel.items():
        events = acc.Histograms(f"weight/{name}")
        assert [e.step for e in events] == steps
        assert all(e.histogram_value.num == numel for e in events), name
    for tag in histograms:
        for e in acc.Histograms(tag):
            h = e.histogram_value
            assert sum(h.bucket) == h.num > 0 and len(h.bucket) == HISTOGRAM_BINS, tag
            assert h.min <= h.max and math.isfinite(h.sum_squares)

    assert hparams_of(acc) == hparam_values(result["choices"])
    return acc


def numels(job: Path) -> dict[str, int]:
    state = torch.load(job / "checkpoint.pt", weights_only=False)["model"]
    return {name: t.numel() for name, t in state.items() if t.is_floating_point() and "running_" not in name}


@pytest.mark.parametrize("settings", [MLP, TRANSFORMER], ids=["mlp", "transformer"])
def test_event_files_hold_the_records(tmp_path, settings):
    job = tmp_path / "job"
    run_job(compose_config(*settings, "logger=tensorboard", "epochs=2", "checkpoint=last"), job)
    acc = check_against_records(job, numels(job))
    assert hparams_of(acc)["epochs"] == 2


def test_last_weights_histogram_equals_the_checkpoint(tmp_path):
    """The epoch-2 weight histograms summarize exactly the weights the job ended with."""
    job = tmp_path / "job"
    run_job(compose_config(*MLP, "logger=tensorboard", "epochs=2", "checkpoint=last"), job)
    acc = read_events(job / TB_DIR)
    for name, w in torch.load(job / "checkpoint.pt", weights_only=False)["model"].items():
        (h,) = [e.histogram_value for e in acc.Histograms(f"weight/{name}") if e.step == 2]
        w = w.double()
        assert (h.min, h.max, h.num) == (w.min().item(), w.max().item(), w.numel())
        assert h.sum == pytest.approx(w.sum().item(), rel=1e-12, abs=1e-12)
        edges = np.linspace(w.min().item(), w.max().item(), HISTOGRAM_BINS + 1)
        assert list(h.bucket) == np.histogram(w.numpy(), bins=edges)[0].tolist()


def test_histograms_count_finite_entries_only(tmp_path):
    t = torch.tensor([1.0, float("nan"), -2.0, float("inf"), 0.5, float("-inf"), 3.0])
    writer = SummaryWriter(str(tmp_path))
    add_histogram(writer, "mixed", t, 0)
    add_histogram(writer, "constant", torch.full((5,), 7.0), 0)
    add_histogram(writer, "none_finite", torch.tensor([float("nan"), float("inf")]), 0)
    writer.close()
    acc = read_events(tmp_path)
    assert set(acc.Tags()["histograms"]) == {"mixed", "constant"}, "no histogram without a finite entry"
    (mixed,) = acc.Histograms("mixed")
    h = mixed.histogram_value
    assert (h.num, h.min, h.max, h.sum, h.sum_squares) == (4, -2.0, 3.0, 2.5, 14.25)
    assert sum(h.bucket) == 4
    (constant,) = acc.Histograms("constant")
    assert (constant.histogram_value.num, sum(constant.histogram_value.bucket)) == (5, 5)


def test_a_diverged_job_histograms_only_finite_entries(tmp_path):
    """init std 1e25: the second layer's h overflows to ±inf (no preact histogram), ReLU keeps the
    zeros of its -inf entries (only those counted), the gradients are NaN (no grad histograms).
    The counts are recomputed from the same model, built as the job builds it."""
    settings = [*MLP, "init=normal", "init.std=1e25", "epochs=1"]
    job = tmp_path / "job"
    result = run_job(compose_config(*settings, "logger=tensorboard"), job)
    assert result["status"] == "diverged" and result["diverged_epoch"] == 0
    exp = to_experiment(compose_config(*settings))
    data = load_data(exp.dataset)
    x, _ = _probe_batch(data, exp.probe_size, exp.seed)
    torch.manual_seed(exp.seed)
    model = build_model(exp, data)
    initialize(model, exp.init, exp.model)
    with torch.no_grad(), probing(model, shifts=False) as probe:
        model(x)
    acc = read_events(job / TB_DIR)
    tags = set(acc.Tags()["histograms"])
    assert not any(t.startswith("grad/") for t in tags)
    some_non_finite = False
    for site, tap in probe.taps.items():
        for kind, t in (("preact", tap.pre), ("act", tap.post)):
            finite = int(torch.isfinite(t).sum())
            some_non_finite |= finite < t.numel()
            if finite == 0:
                assert f"{kind}/{site}" not in tags
            else:
                (event,) = acc.Histograms(f"{kind}/{site}")
                assert event.histogram_value.num == finite, (kind, site)
    assert some_non_finite, "the case must hold non-finite entries"
    assert "preact/acts.1" not in tags and 0 < acc.Histograms("act/acts.1")[0].histogram_value.num < x.shape[0] * 8


def test_logger_none_writes_nothing_and_a_fresh_start_removes_an_old_tb(tmp_path):
    job = tmp_path / "job"
    run_job(compose_config(*MLP, "logger=tensorboard", "epochs=1"), job)
    assert any((job / TB_DIR).iterdir())
    result = run_job(compose_config(*MLP, "epochs=1", "resume=false"), job)
    assert not (job / TB_DIR).exists(), "another run's events stayed beside the new records"
    assert "logger" not in result["choices"], "the logger observes the run; it is not one of its choices"


def test_resumed_run_reads_back_as_an_uninterrupted_one(tmp_path):
    """The killed session wrote epoch 3's events but died before epoch 3's checkpoint: the rerun
    trains epoch 3 again, and its purge_step hides the first copy. Before that the run was
    extended from 2 to 3 epochs, so the 2-epoch run's hparams and final metrics must go too."""
    job, whole = tmp_path / "job", tmp_path / "whole"
    settings = [*MLP, "logger=tensorboard", "checkpoint=last"]
    run_job(compose_config(*settings, "epochs=2"), job)
    after_2 = (job / "checkpoint.pt").read_bytes()
    run_job(compose_config(*settings, "epochs=3"), job)  # extends to epoch 3, then "dies" before it
    (job / "checkpoint.pt").write_bytes(after_2)
    (job / "result.json").unlink()
    run_job(compose_config(*settings, "epochs=3"), job)
    run_job(compose_config(*settings, "epochs=3"), whole)

    resumed, uninterrupted = read_events(job / TB_DIR), read_events(whole / TB_DIR)
    assert scalars(resumed) == scalars(uninterrupted)
    for tag, points in scalars(resumed).items():  # one point per epoch: none twice, none missing
        steps = [s for s, _ in points]
        assert steps == [3] if tag.startswith("final/") else steps == list(range(steps[0], 4)), (tag, steps)
    assert set(resumed.Tags()["histograms"]) == set(uninterrupted.Tags()["histograms"])
    for tag in resumed.Tags()["histograms"]:
        assert ([(e.step, e.histogram_value) for e in resumed.Histograms(tag)]
                == [(e.step, e.histogram_value) for e in uninterrupted.Histograms(tag)]), tag
    assert hparams_of(resumed) == hparams_of(uninterrupted) and hparams_of(resumed)["epochs"] == 3
    assert len(list((job / TB_DIR).glob("*.hparams"))) == 1
    check_against_records(job, numels(job))


RESTARTS = ["early_stopping.enabled=true", "early_stopping.monitor=val_acc", "early_stopping.patience=10",
            "early_stopping.restarts=2", "early_stopping.restart_below=1.0"]  # every attempt fails: 3 run


def attempt_scalars(job: Path) -> dict[int, dict[str, list[tuple[int, float]]]]:
    """Per attempt, the scalars of its TensorBoard run (tb/, then tb/attempt=k/), final/ left out."""
    runs = {0: job / TB_DIR, **{int(p.name.split("=")[1]): p for p in (job / TB_DIR).glob("attempt=*")}}
    return {a: {t: v for t, v in scalars(read_events(folder)).items() if not t.startswith("final/")}
            for a, folder in sorted(runs.items())}


def test_each_restart_is_a_run_of_its_own_with_its_attempts_epochs(tmp_path):
    """All attempts logged into one run with step = epoch: val/acc's steps read 0..4, 0..4, 0..4,
    drawn over each other. Each attempt is now its own run, equal to epochs.csv's rows of it."""
    run_job(compose_config(*MLP, "logger=tensorboard", "epochs=4", *RESTARTS), tmp_path)
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    per_attempt = attempt_scalars(tmp_path)
    assert sorted(per_attempt) == [0, 1, 2] == sorted(epochs["attempt"].unique())
    for attempt, logged in per_attempt.items():
        rows = epochs[epochs["attempt"] == attempt]
        for key, tag in SCALARS.items():
            if key in rows and rows[key].notna().any():
                kept = rows[rows[key].notna()]
                assert logged[tag] == [(int(e), f32(v)) for e, v in zip(kept["epoch"], kept[key])], (attempt, tag)
    assert len(list((tmp_path / TB_DIR).rglob("*.hparams"))) == 1


@pytest.mark.slow
def test_a_job_killed_in_a_restart_keeps_the_earlier_attempts_points(tmp_path):
    """Killed in attempt 1 and rerun: its purge_step hid attempt 0's points at and after that
    epoch (13 of 15 train/loss points left); now the purge stays in the attempt's own run."""
    from test_resume import SLOW_JOB, attempt_checkpointed, kill_when, start_train, train

    config = [*SLOW_JOB, "epochs=5", "dataset.val_size=500", "logger=tensorboard", RESTARTS[0], RESTARTS[2],
              "early_stopping.monitor=val_loss", "early_stopping.restarts=1",
              "early_stopping.restart_below=1e-9"]  # blobs reach val_acc 1: a loss never that low fails every attempt
    run_job(compose_config(*config), tmp_path / "whole")
    job = tmp_path / "killed"
    proc = start_train(*config, f"hydra.run.dir={job}")
    kill_when(proc, lambda: attempt_checkpointed(job, 1, 2))
    assert not (job / "result.json").exists()
    train(*config, f"hydra.run.dir={job}")
    assert "(attempt 1)" in (job / "train.log").read_text()
    assert attempt_scalars(job) == attempt_scalars(tmp_path / "whole")


def test_a_sweep_is_one_run_per_job_with_the_same_tags(tmp_path):
    """``tensorboard --logdir <sweep>``: each job's tb/ is a run, and the tags match across jobs."""
    for width in (4, 8):
        run_job(compose_config(*MLP, "logger=tensorboard", "epochs=1", f"model.width={width}"),
                tmp_path / f"model.width={width}")
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer(size_guidance={"scalars": 0})
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    runs = mux.Runs()
    assert set(runs) == {f"model.width={w}/{TB_DIR}" for w in (4, 8)}
    tags = [set(runs[r]["scalars"]) for r in sorted(runs)]
    assert tags[0] == tags[1]
    widths = {hparams_of(mux.GetAccumulator(r))["model.width"] for r in runs}
    assert widths == {4, 8}


@pytest.mark.slow
def test_killed_job_reads_back_as_an_uninterrupted_one(tmp_path):
    """kill -9 of train.py mid-training, rerun: every scalar and histogram as in one whole run."""
    from test_resume import SLOW_JOB, checkpointed_epoch, kill_when, start_train, train

    config = [*SLOW_JOB, "epochs=8", "logger=tensorboard"]
    run_job(compose_config(*config), tmp_path / "whole")
    job = tmp_path / "killed"
    proc = start_train(*config, f"hydra.run.dir={job}")
    kill_when(proc, lambda: checkpointed_epoch(job) >= 2)
    assert checkpointed_epoch(job) < 8
    train(*config, f"hydra.run.dir={job}")
    assert "resuming from the checkpoint after epoch" in (job / "train.log").read_text()

    resumed, whole = read_events(job / TB_DIR), read_events(tmp_path / "whole" / TB_DIR)
    assert scalars(resumed) == scalars(whole)
    assert set(resumed.Tags()["histograms"]) == set(whole.Tags()["histograms"])
    for tag in whole.Tags()["histograms"]:
        assert ([(e.step, e.histogram_value) for e in resumed.Histograms(tag)]
                == [(e.step, e.histogram_value) for e in whole.Histograms(tag)]), tag
    assert hparams_of(resumed) == hparams_of(whole)
