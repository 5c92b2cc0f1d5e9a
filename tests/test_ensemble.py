"""A vectorized ensemble (initlab.ensemble) writes every member's folder as its solo run would.

Each test trains a tiny group with ``run_group`` and the same jobs one at a time with
``initlab.train.job.run``, then compares every CSV to float tolerance and result.json's keys and
values (times aside): the solo run is the independent reference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from conftest import compose_config, run_job
from initlab.config import ConfigError, to_experiment
from initlab.ensemble import VARYING, plan, run_group, unbatchable

CSVS = ("epochs.csv", "layers.csv", "jacobian.csv", "jacobian_sv.csv", "steps.csv", "distributions.csv")
TIMES = {"epoch_time", "wall_time", "train_time"}
QUICK = ["dataset=digits", "epochs=2", "threads=1", "probe_size=64", "jacobian_every=1", "log_every_steps=7",
         "distributions_every=2"]
FAMILIES = {
    "mlp": ["depth=3", "model.width=16"],
    "resmlp": ["model=resmlp", "depth=4", "model.width=16"],
    "mlp-layernorm": ["depth=3", "model.width=16", "model.norm=layernorm"],
    "mlp-momentum": ["depth=3", "model.width=16", "optimizer=momentum"],  # per-member torch.optim steps
    "mlp-adam": ["depth=3", "model.width=16", "optimizer=adam", "optimizer.lr=0.001"],
    "mlp-dks": ["depth=3", "model.width=16", "activation=tanh", "activation.transform=dks"],  # PLN inputs
    "mlp-cosine": ["depth=3", "model.width=16", "epochs=3", "scheduler=cosine", "scheduler.warmup_epochs=1"],  # lr per epoch
    "cnn": ["model=cnn", "depth=3", "model.channels=[4,6]"],
    "cnn-residual": ["model=cnn", "depth=3", "model.channels=[4,6]", "model.residual=true"],
}
# members differ in seed, init, bias init, lr and weight decay
MEMBERS = [["seed=0"], ["seed=1", "optimizer.lr=0.05", "optimizer.weight_decay=0.001"],
           ["seed=0", "init=xavier_normal", "model.bias_init=normal", "model.bias_std=0.1"]]


def without_times(value):
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k not in TIMES}
    return value


def assert_close(a, b, path="result"):
    """Equal JSON values, floats to 1e-4 relative (NaN equals NaN)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert (a is None) == (b is None), path
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) or (math.isnan(a) and math.isnan(b)), (path, a, b)
    else:
        assert a == b, (path, a, b)


def assert_same_job(group_dir: Path, solo_dir: Path) -> None:
    """Same files; every CSV equal to float tolerance (times aside); result.json likewise."""
    names = {p.name for p in group_dir.iterdir()}
    assert names == {p.name for p in solo_dir.iterdir()}
    for name in CSVS:
        if name not in names:
            continue
        a, b = (pd.read_csv(d / name) for d in (group_dir, solo_dir))
        a, b = (t.drop(columns=[c for c in t.columns if c in TIMES]) for t in (a, b))
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-6, obj=name)
    results = [without_times(json.loads((d / "result.json").read_text())) for d in (group_dir, solo_dir)]
    assert_close(*results)


def group_and_solo(tmp_path: Path, common: list[str], members: list[list[str]]) -> list[dict]:
    cfgs = [compose_config(*common, *m) for m in members]
    results = run_group(cfgs, [tmp_path / f"member{i}" for i in range(len(cfgs))])
    for i, m in enumerate(members):
        run_job(compose_config(*common, *m), tmp_path / f"solo{i}")
        assert_same_job(tmp_path / f"member{i}", tmp_path / f"solo{i}")
    return results


@pytest.mark.filterwarnings("error:Detected call of")  # torch's scheduler check, blind to the stacked SGD step
@pytest.mark.parametrize("family", FAMILIES)
def test_members_equal_their_solo_runs(tmp_path, family):
    results = group_and_solo(tmp_path, [*QUICK, *FAMILIES[family]], MEMBERS)
    assert all(r["status"] == "completed" for r in results)
    assert len({r["final"]["train_loss"] for r in results}) == len(results)  # the members really differ


def test_a_diverging_member_is_masked_while_the_others_go_on(tmp_path):
    results = group_and_solo(tmp_path, [*QUICK, "epochs=3", *FAMILIES["mlp"]],
                             [["seed=0"], ["seed=0", "optimizer.lr=1e6"], ["seed=2"]])
    assert [r["status"] for r in results] == ["completed", "diverged", "completed"]


def test_a_member_whose_step_overflows_float32_diverges_as_its_solo_run(tmp_path):
    """momentum SGD steps each member with its own torch optimizer, which refuses an lr of 1e39
    (a scalar beyond float32): the whole group failed and ran its jobs one at a time. Now that
    member diverges at epoch 1 exactly as its solo run records it; the others go on."""
    results = group_and_solo(tmp_path, [*QUICK, "epochs=2", "optimizer=momentum", *FAMILIES["mlp"]],
                             [["seed=0"], ["seed=0", "optimizer.lr=1e39"], ["seed=2"]])
    assert [r["status"] for r in results] == ["completed", "diverged", "completed"]
    assert results[1]["diverged_epoch"] == 1
    assert float(pd.read_csv(tmp_path / "member1" / "epochs.csv")["train_loss"].iloc[1]) == math.inf


def test_early_stopping_and_restarts_are_per_member(tmp_path):
    """The member that cannot learn (lr 1e-12) fails restart_below and restarts; the others do
    not; each stops by its own patience."""
    common = [*QUICK, "epochs=3", *FAMILIES["mlp"], "dataset.val_size=300", "early_stopping.enabled=true",
              "early_stopping.monitor=val_acc", "early_stopping.patience=1", "early_stopping.restarts=1",
              "early_stopping.restart_below=0.2", "checkpoint=best"]
    results = group_and_solo(tmp_path, common, [["seed=0", "optimizer.lr=0.3"], ["seed=1", "optimizer.lr=1e-12"],
                                                ["seed=2", "optimizer.lr=0.3"]])
    attempts = [r["final_attempt"] for r in results]
    assert attempts[1] == 1 and 0 in attempts, attempts
    assert results[1]["stopped_epoch"] is not None


def test_a_partly_finished_group_trains_only_the_rest(tmp_path):
    """Member 0 finished, member 1 holds a checkpoint of epoch 1 (to be extended to 3 epochs),
    member 2 is new: the group skips 0, resumes 1, starts 2, and each equals its solo run."""
    common = [*QUICK, *FAMILIES["mlp"], "epochs=3", "checkpoint=last"]
    members = [["seed=0"], ["seed=1", "optimizer.lr=0.05"], ["seed=2"]]
    run_job(compose_config(*common, *members[0]), tmp_path / "member0")
    first = json.loads((tmp_path / "member0" / "result.json").read_text())
    written = (tmp_path / "member0" / "epochs.csv").stat().st_mtime_ns
    run_job(compose_config(*QUICK, *FAMILIES["mlp"], "epochs=1", "checkpoint=last", *members[1]),
            tmp_path / "member1")
    results = group_and_solo(tmp_path, common, members)
    assert results[0] == first  # skipped: its result.json read back, nothing retrained
    assert (tmp_path / "member0" / "epochs.csv").stat().st_mtime_ns == written
    assert pd.read_csv(tmp_path / "member1" / "epochs.csv")["epoch"].tolist() == [0, 1, 2, 3]
    for i in (1, 2):  # a member's checkpoint holds its own weights, not the whole stack's
        sizes = [(tmp_path / f"{who}{i}" / "checkpoint.pt").stat().st_size for who in ("member", "solo")]
        assert sizes[0] < 1.2 * sizes[1], sizes


def test_plan_groups_jobs_that_differ_only_in_varying_settings():
    base = ["dataset=digits", "depth=3", "model.width=16"]
    cfgs = [compose_config(*base, "seed=0"), compose_config(*base, "seed=1", "init=he_normal"),
            compose_config(*base, "model.width=8"), compose_config(*base, "optimizer.lr=0.3"),
            compose_config(*base, "model.norm=batchnorm"), compose_config(*base, "optimizer.weight_decay=0.1"),
            compose_config(*base, "optimizer.lr=0")]  # invalid: alone, where its own run reports it
    assert plan(cfgs) == [[0, 1, 3, 5], [2], [4], [6]]
    assert plan(cfgs, max_members=2) == [[0, 1], [2], [3, 5], [4], [6]]
    with pytest.raises(ValueError, match="max_members"):
        plan(cfgs, max_members=0)
    assert {"seed", "init", "optimizer.lr", "optimizer.weight_decay", "model.bias_init"} <= set(VARYING)


@pytest.mark.parametrize("setting, words", [
    (["model.norm=batchnorm"], "batchnorm"), (["model=resnet18", "dataset=cifar10"], "resnet18"),
    (["model=transformer", "dataset=imdb"], "transformer")])
def test_unbatchable_jobs_say_why(setting, words):
    exp = to_experiment(compose_config("depth=3", *setting))
    assert words in unbatchable(exp)
    assert unbatchable(to_experiment(compose_config("depth=3"))) is None


def test_a_group_refuses_members_that_differ_outside_varying(tmp_path):
    cfgs = [compose_config(*QUICK, "depth=3"), compose_config(*QUICK, "depth=2")]
    with pytest.raises(ConfigError, match="VARYING"):
        run_group(cfgs, [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists()


def test_a_member_of_another_run_stops_the_group_before_training(tmp_path):
    """member1's folder holds a checkpoint of other settings: ConfigError naming that folder, and
    no member has trained (member0's folder is not even created)."""
    run_job(compose_config(*QUICK, "depth=3", "epochs=1", "checkpoint=last", "optimizer.lr=0.5"), tmp_path / "b")
    cfgs = [compose_config(*QUICK, "depth=3"), compose_config(*QUICK, "depth=3", "seed=1")]
    with pytest.raises(ConfigError, match=f"{tmp_path / 'b'}.*optimizer.lr"):
        run_group(cfgs, [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists()
