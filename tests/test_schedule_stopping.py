"""Schedulers, early stopping, restarts and kept checkpoints in real (tiny) jobs.

The lr column is checked against the schedules' closed forms (and ReduceLROnPlateau against a
replay of its rule over the recorded losses); the restored model is rebuilt from the config, loaded
from best.pt and evaluated again, so a "best" that is a reference to the live weights fails.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import CONF, compose_config, run_job, run_train
from initlab.cli import check_single_run
from initlab.config import to_experiment
from initlab.data import load_data
from initlab.models import build_model
from initlab.train.job import attempt_seed
from initlab.train.loop import evaluate
from initlab.train.saved import load_model

TINY = ["epochs=8", "threads=1", "device=cpu", "probe_size=64", "dataset.val_size=200", "optimizer=adam",
        "optimizer.lr=0.05"]
FAMILIES = {"mlp": ["model=mlp", "depth=2", "model.width=16"], "resmlp": ["model=resmlp", "depth=3", "model.width=16"],
            "cnn": ["model=cnn", "depth=2", "model.channels=[4,8]"]}
METRICS = ["val_loss", "val_acc", "test_loss", "test_acc"]


def rebuilt(overrides: list[str], weights: dict):
    """The job's model built again from its config, with ``weights`` loaded; and its data."""
    exp = to_experiment(compose_config(*overrides))
    data = load_data(exp.dataset)
    model = build_model(exp, data)
    model.load_state_dict(weights)
    return model, data


def metrics(model, data) -> dict:
    (val_loss, val_acc), (test_loss, test_acc) = evaluate(model, data.x_val, data.y_val), evaluate(model, data.x_test, data.y_test)
    return {"val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc}


@pytest.mark.parametrize("family", ["mlp", "resmlp"])
def test_the_restored_model_is_the_best_epochs_not_the_last(tmp_path, family):
    """Trained past the best epoch (patience longer than the run): best.pt, evaluated again, gives
    the best epoch's row; checkpoint.pt's last weights give the last row; result.json's final is
    the best row."""
    overrides = [*FAMILIES[family], *TINY, "early_stopping.enabled=true", "early_stopping.patience=8",
                 "checkpoint=both"]
    result = run_job(compose_config(*overrides), tmp_path)
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    best = int(epochs["val_loss"].idxmin())
    assert result["best_epoch"] == best < 8, "the run must go past its best epoch for this test to mean anything"
    assert result["stopped_epoch"] is None and result["restored_best"] is True and result["final_attempt"] == 0
    assert result["final"] == pytest.approx(epochs.iloc[best].to_dict(), abs=0, rel=0)

    model, data = rebuilt(overrides, torch.load(tmp_path / "best.pt"))
    assert metrics(model, data) == {k: epochs.at[best, k] for k in METRICS}
    last = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    model, data = rebuilt(overrides, last)
    assert metrics(model, data) == {k: epochs.at[8, k] for k in METRICS}


def test_a_batchnorm_model_restored_to_epoch_0_evaluates_to_its_final_row(tmp_path):
    """The break-it test's case: epoch 0 of a BatchNorm model was evaluated with the probe batch's
    statistics, while best.pt kept the initial running statistics (mean 0, variance 1): evaluated
    again it gave test_acc 0.0972 against result.json's 0.1333. Epoch 0 is evaluated in eval mode
    as every epoch is, so the saved model gives its row."""
    overrides = ["model.norm=batchnorm", *FAMILIES["mlp"], *TINY, "epochs=3", "early_stopping.enabled=true",
                 "early_stopping.monitor=val_acc", "early_stopping.min_delta=0.9", "early_stopping.patience=2",
                 "checkpoint=both"]
    result = run_job(compose_config(*overrides), tmp_path)
    assert result["best_epoch"] == 0 and result["restored_best"] is True
    model, data = rebuilt(overrides, torch.load(tmp_path / "best.pt"))
    assert metrics(model, data) == {k: result["final"][k] for k in METRICS}


@pytest.mark.slow
def test_kept_checkpoints_load_back_into_the_model_of_the_jobs_config(tmp_path):
    """train.py writes .hydra/; load_model rebuilds the model from it and loads best.pt or
    checkpoint.pt, which evaluate to the best and the last epoch's rows."""
    overrides = [*FAMILIES["mlp"], *TINY, "epochs=4", "early_stopping.enabled=true", "early_stopping.patience=4",
                 "early_stopping.monitor=val_acc", "checkpoint=both"]
    done = run_train(*overrides, f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.describe()
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    best = int(epochs["val_acc"].idxmax())
    data = load_data(to_experiment(compose_config(*overrides)).dataset)
    assert metrics(load_model(tmp_path), data) == {k: epochs.at[best, k] for k in METRICS}
    assert metrics(load_model(tmp_path, "checkpoint.pt"), data) == {k: epochs.at[4, k] for k in METRICS}


def test_early_stopping_stops_after_patience_epochs_without_improvement(tmp_path):
    result = run_job(compose_config(*FAMILIES["mlp"], *TINY, "early_stopping.enabled=true",
                                    "early_stopping.patience=1", "early_stopping.monitor=val_acc"), tmp_path)
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    acc = epochs["val_acc"].tolist()
    first_fall = next(e for e in range(1, len(acc)) if acc[e] <= max(acc[:e]))  # patience 1: the first non-gain
    assert result["stopped_epoch"] == first_fall == epochs["epoch"].iloc[-1] < 8
    assert result["best_epoch"] == int(np.argmax(acc))
    assert not (tmp_path / "best.pt").exists() and not (tmp_path / "checkpoint.pt").exists()  # checkpoint=none
    # patience running out on the last epoch is no stop: the run went to `epochs` (stopped_epoch null)
    whole = run_job(compose_config(*FAMILIES["mlp"], *TINY, "early_stopping.enabled=true", "early_stopping.patience=1",
                                   "early_stopping.monitor=val_acc", f"epochs={first_fall}"), tmp_path / "whole")
    assert whole["stopped_epoch"] is None and whole["best_epoch"] == result["best_epoch"] and whole["restored_best"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "whole" / "epochs.csv").drop(columns="epoch_time"),
                                  epochs.drop(columns="epoch_time"))


def test_restarts_keep_every_attempts_rows_from_fresh_inits(tmp_path):
    """restart_below=1, above any accuracy reached: every attempt fails, so restarts=2 runs three attempts,
    each from epoch 0 of a new init; attempt 0 is the run without restarts, row for row."""
    stop = ["early_stopping.enabled=true", "early_stopping.patience=1", "early_stopping.monitor=val_acc", "epochs=3"]
    result = run_job(compose_config(*FAMILIES["mlp"], *TINY, *stop, "early_stopping.restarts=2",
                                    "early_stopping.restart_below=1.0"), tmp_path / "restarts")
    plain = run_job(compose_config(*FAMILIES["mlp"], *TINY, *stop), tmp_path / "plain")
    epochs = pd.read_csv(tmp_path / "restarts" / "epochs.csv")
    assert result["final_attempt"] == 2 and plain["final_attempt"] == 0
    assert sorted(set(epochs["attempt"])) == [0, 1, 2]
    starts = epochs[epochs["epoch"] == 0]
    assert starts["attempt"].tolist() == [0, 1, 2] and starts["train_loss"].nunique() == 3  # three inits
    first = epochs[epochs["attempt"] == 0].drop(columns="epoch_time")
    pd.testing.assert_frame_equal(first, pd.read_csv(tmp_path / "plain" / "epochs.csv").drop(columns="epoch_time"))
    layers = pd.read_csv(tmp_path / "restarts" / "layers.csv")
    assert layers.columns[-1] == "attempt" and sorted(set(layers["attempt"])) == [0, 1, 2]
    assert result["final"]["attempt"] == 2 and result["restored_best"]
    assert len({attempt_seed(0, 1), attempt_seed(0, 2), attempt_seed(1, 1), 0, 1}) == 5


def test_a_reached_restart_below_ends_the_restarts(tmp_path):
    result = run_job(compose_config(*FAMILIES["mlp"], *TINY, "epochs=2", "early_stopping.enabled=true",
                                    "early_stopping.monitor=val_acc", "early_stopping.restarts=3",
                                    "early_stopping.restart_below=0.2"), tmp_path)
    assert result["final_attempt"] == 0 and set(pd.read_csv(tmp_path / "epochs.csv")["attempt"]) == {0}


def cosine(e: int, lr: float, warmup: int, t_max: int, eta_min: float) -> float:
    if e == 0:
        return lr
    if e <= warmup:
        return lr * e / warmup
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * (e - warmup - 1) / t_max)) / 2


def plateau_replay(values: list[float], lr: float, factor: float, patience: int, min_lr: float,
                   mode: str = "min") -> list[float]:
    """ReduceLROnPlateau's rule (relative threshold 1e-4) over epochs 1.., from its docs; ``mode``
    max for a monitor that improves upward (an accuracy)."""
    sign = 1.0 if mode == "min" else -1.0
    lrs, best, bad = [lr, lr], math.inf, 0
    for value in values[1:-1]:
        loss = sign * value
        if loss < best * (1 - 1e-4 if best > 0 else 1 + 1e-4):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = max(lr * factor, min_lr), 0
        lrs.append(lr)
    return lrs


@pytest.mark.parametrize("family,schedule", [
    ("cnn", ["scheduler=cosine", "scheduler.warmup_epochs=2", "scheduler.eta_min=0.001"]),
    ("mlp", ["scheduler=step", "scheduler.step_size=3", "scheduler.gamma=0.5", "scheduler.warmup_epochs=1"]),
    ("mlp", ["scheduler=reduce_on_plateau", "scheduler.patience=0", "scheduler.factor=0.5", "scheduler.min_lr=0.01",
             "scheduler.monitor=val_loss"]),
    ("resmlp", ["scheduler=reduce_on_plateau", "scheduler.patience=1", "scheduler.factor=0.3", "scheduler.monitor=val_loss"]),
    ("mlp", ["scheduler=reduce_on_plateau", "scheduler.patience=0", "scheduler.factor=0.5",
             "scheduler.monitor=val_acc"]),
], ids=["cnn-cosine-warmup", "mlp-step-warmup", "mlp-plateau", "resmlp-plateau", "mlp-plateau-accuracy"])
def test_the_lr_column_shows_the_schedule(tmp_path, family, schedule):
    run_job(compose_config(*FAMILIES[family], *TINY, *schedule), tmp_path)
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    lr, name = 0.05, schedule[0].split("=")[1]
    if name == "cosine":
        expected = [cosine(e, lr, 2, 8 - 2, 0.001) for e in range(9)]
    elif name == "step":
        expected = [lr, lr] + [lr * 0.5 ** ((e - 2) // 3) for e in range(2, 9)]
    else:
        params = dict(s.split("=") for s in schedule[1:])
        monitor = params["scheduler.monitor"]  # an accuracy's lr was cut while it rose (mode was min)
        expected = plateau_replay(epochs[monitor].tolist(), lr, float(params["scheduler.factor"]),
                                  int(params["scheduler.patience"]), float(params.get("scheduler.min_lr", 0)),
                                  mode="max" if monitor.endswith("_acc") else "min")
        assert len(set(expected)) > 1, "the plateau rule must act in this run for the test to mean anything"
    assert epochs["lr"].tolist() == pytest.approx(expected, rel=1e-9)


ACC_RESTARTS = ["dataset.val_size=100", "early_stopping.enabled=true", "early_stopping.restarts=1",
                "early_stopping.monitor=val_acc"]


@pytest.mark.parametrize("args,line", [
    (["early_stopping.enabled=true"],
     "early_stopping.enabled=true (monitor val_loss) needs a validation split: set dataset.val_size > 0"),
    (["checkpoint=best"], "checkpoint=best (best by val_loss) needs a validation split: set dataset.val_size > 0"),
    (["scheduler=reduce_on_plateau", "scheduler.monitor=val_acc"],
     "scheduler.monitor=val_acc needs a validation split: set dataset.val_size > 0"),
    (["early_stopping.enabled=true", "early_stopping.restarts=2"],
     "early_stopping.restarts=2 needs early_stopping.restart_below (the value of val_loss an attempt must reach), "
     "got null"),
    (["early_stopping.patience=0"], "early_stopping.patience must be >= 1, got 0"),
    # thresholds past what the monitor can be: restart_below=2 failed every attempt, -1 restarted only diverged ones
    ([*ACC_RESTARTS, "early_stopping.restart_below=2"], "early_stopping.restart_below=2.0 with early_stopping.monitor="
     "val_acc: every attempt would fail (an accuracy is at most 1); valid: a number in [0, 1] (0: only a diverged "
     "attempt restarts)"),
    ([*ACC_RESTARTS, "early_stopping.restart_below=-1"], "early_stopping.restart_below=-1.0 with early_stopping."
     "monitor=val_acc: only a diverged attempt would restart (an accuracy is at least 0), as with 0; valid: a number "
     "in [0, 1]"),
    ([*ACC_RESTARTS[:-1], "early_stopping.restart_below=-0.5"], "early_stopping.restart_below=-0.5 with "
     "early_stopping.monitor=val_loss: every attempt would fail (a loss is at least 0); valid: a number > 0"),
    (["checkpoint=all"], "checkpoint=all: Invalid value 'all'; valid: one of none, last, best, both"),
    (["scheduler=cosine", "scheduler.warmup_epochs=100", "epochs=2"],
     "scheduler=cosine never starts: scheduler.warmup_epochs=100 fills all epochs=2, so its fields change nothing; "
     "valid: warmup_epochs < epochs, or scheduler=none"),
    # one warmup epoch under a constant lr is optimizer.lr * 1/1: the run was that of warmup_epochs=0
    (["++scheduler.warmup_epochs=1", "epochs=3"], "scheduler.warmup_epochs=1 changes nothing with scheduler=none (its "
     "one warmup epoch's lr, optimizer.lr * 1/1, is the constant lr itself); valid: 0, or >= 2"),
    # a floor at or above the lr: cosine's lr climbed 0.01 -> 0.155 -> 0.505 -> 0.855 (README: down to eta_min)
    (["scheduler=cosine", "scheduler.eta_min=1"], "scheduler.eta_min must be < optimizer.lr (0.01: cosine anneals "
     "from optimizer.lr down to eta_min: above the lr it would climb, at it stay constant, as with scheduler=none), "
     "got 1.0"),
    (["scheduler=cosine", "scheduler.eta_min=0.01"], "scheduler.eta_min must be < optimizer.lr (0.01: cosine anneals "
     "from optimizer.lr down to eta_min: above the lr it would climb, at it stay constant, as with scheduler=none), "
     "got 0.01"),
    (["scheduler=reduce_on_plateau", "scheduler.min_lr=0.01"], "scheduler.min_lr must be < optimizer.lr (0.01: "
     "reduce_on_plateau cuts optimizer.lr, never below min_lr: at or above the lr it would never cut, as with "
     "scheduler=none), got 0.01"),
    (["scheduler=step", "scheduler.gamma=1"], "scheduler.gamma must be in (0, 1), got 1.0"),  # x 1: a constant lr
])
def test_settings_that_need_a_validation_split_or_each_other_are_refused_in_one_line(args, line):
    assert check_single_run(args, CONF) == line


@pytest.mark.parametrize("monitor,below", [("val_acc", "0"), ("val_acc", "1"), ("val_loss", "0.01")])
def test_restart_below_at_the_monitors_bounds_is_accepted(monitor, below):
    """0 restarts only diverged attempts, 1 every attempt short of a perfect one (min_delta=1, as the
    tests use it to stop at the patience, stays accepted)."""
    assert check_single_run([*ACC_RESTARTS[:-1], f"early_stopping.monitor={monitor}",
                             f"early_stopping.restart_below={below}", "early_stopping.min_delta=1"], CONF) is None


@pytest.mark.parametrize("schedule", [["scheduler=step"], ["scheduler=cosine"], ["scheduler=reduce_on_plateau"]])
def test_one_warmup_epoch_before_a_schedule_is_accepted(schedule):
    """Under a schedule, warmup_epochs=1 holds optimizer.lr one epoch before the schedule's epoch 0
    (test_the_lr_column_shows_the_schedule's step arm): it changes the run, so it is no refusal."""
    assert check_single_run([*schedule, "scheduler.warmup_epochs=1", "epochs=3"], CONF) is None
