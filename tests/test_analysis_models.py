"""The analysis of any model (P6) on fabricated job folders in the real record format: site columns,
old MLP records without them, the model column and options, the convergence epoch, figures that
never pool models, the plain-vs-residual figure by value, the per-site axis and the report's
reasons for empty predictions. No training: tests/jobfactory.py writes the folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from jobfactory import NO_THEORY, sites, write_job

import analyze
from initlab.analysis import report
from initlab.analysis import tables as analysis
from initlab.analysis.figures import FAMILIES, Plotter, PoolingError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_figures():
    with plt.rc_context({"figure.max_open_warning": 0}):
        yield
    plt.close("all")


def model_sweep(root: Path, models=("mlp", "resmlp"), depths=(2, 6), seeds=(0, 1), **job) -> Path:
    """Every model x depth x seed as a job folder; resmlp with norm=batchnorm."""
    for model in models:
        for depth in depths:
            for seed in seeds:
                write_job(root / f"model={model},depth={depth},seed={seed}", model=model, depth=depth, seed=seed,
                          model_params={"norm": "batchnorm"} if model == "resmlp" else None,
                          overrides=[f"model={model}", f"depth={depth}", f"seed={seed}"], **job)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def first_epoch_at_95(acc: list[float]) -> float:
    """Independent reference: the first epoch >= 1 with acc >= 0.95 * final, else NaN."""
    acc = np.asarray(acc, dtype=float)
    hits = np.flatnonzero(acc[1:] >= 0.95 * acc[-1])
    return float(hits[0] + 1) if hits.size else float("nan")


# --- records --------------------------------------------------------------------------------------
def test_old_mlp_records_get_kinds_from_the_layer_number(tmp_path):
    job = write_job(tmp_path / "old", depth=3, epochs=2, site_columns=False, grad_norm=False, n_params=None)
    assert "kind" not in pd.read_csv(job / "layers.csv") and "grad_norm" not in pd.read_csv(job / "epochs.csv")
    tables = analysis.load([tmp_path])
    layers = tables.layers
    assert (layers["kind"] == np.where(layers["layer"] <= 3, "hidden", "output")).all()
    assert (layers["index"] == layers["layer"] - 1).all() and layers["site"].isna().all()
    runs = tables.runs
    assert runs["model"].tolist() == ["mlp"] and runs["n_params"].isna().all()
    assert Plotter(tables, tmp_path / "out", strict=True).grad_norm_per_epoch() == []


def test_site_rows_of_any_model_are_read_in_forward_order(tmp_path):
    write_job(tmp_path / "res", model="resmlp", model_params={"norm": "batchnorm"}, depth=3, epochs=2, n_params=12345)
    tables = analysis.load([tmp_path])
    layout = sites("resmlp", 3)
    at_init = tables.layers[tables.layers["epoch"] == 0].sort_values("index")
    assert at_init["site"].tolist() == [s for s, _, _ in layout]
    assert at_init["kind"].tolist() == [k for _, k, _ in layout]
    hidden_or_output = at_init[at_init["kind"].isin(["hidden", "output"])]
    assert hidden_or_output["layer"].tolist() == list(range(1, len(hidden_or_output) + 1))
    assert at_init.loc[~at_init["kind"].isin(["hidden", "output"]), "layer"].isna().all()
    row = tables.runs.iloc[0]
    assert row["model"] == "resmlp" and row["n_params"] == 12345 and row["model.norm"] == "batchnorm"
    assert row["theory_reason"] == NO_THEORY and np.isnan(row.get("q_log_misfit", np.nan))
    for key in ("sigma_w2", "chi1", "q_star", "xi_q", "xi_c"):  # no theory: empty, not "grows without bound"
        assert np.isnan(row[key]), (key, row[key])


def test_a_job_whose_epochs_have_different_site_counts_is_skipped(tmp_path):
    job = write_job(tmp_path / "cut", model="resmlp", depth=3, epochs=2, rows=False)
    layers = pd.read_csv(job / "layers.csv")
    layers.drop(index=layers.index[-1]).to_csv(job / "layers.csv", index=False)
    tables = analysis.load([tmp_path])
    assert tables.runs.empty and "rows per epoch differ" in tables.skipped[0].reason


# --- convergence ----------------------------------------------------------------------------------
CURVES = [[0.1, 0.5, 0.8, 0.9, 0.86],  # 0.95 * 0.86 = 0.817: epoch 3
          [0.1, 0.95, 0.2, 0.3, 0.9],  # 0.855: epoch 1 already
          [0.1, 0.2, 0.3, 0.4, 0.8],  # only the final epoch
          [0.1, 0.0, 0.0, 0.0, 0.0]]  # final 0: every trained epoch reaches 0


@pytest.mark.parametrize("val", [True, False])
@pytest.mark.parametrize("curve", CURVES)
def test_convergence_epoch_is_the_first_epoch_at_95_percent_of_the_final(tmp_path, curve, val):
    write_job(tmp_path / "job", epochs=4, curve=curve, val=val)
    row = analysis.load([tmp_path]).runs.iloc[0]
    epochs = pd.read_csv(tmp_path / "job" / "epochs.csv")
    metric = "val_acc" if val else "test_acc"
    assert epochs[metric].tolist() == pytest.approx(curve)
    assert row["convergence_metric"] == metric
    np.testing.assert_equal(row["convergence_epoch"], first_epoch_at_95(curve))
    if val:  # the test curve is the factory's own rise: the column must not follow it
        assert row["final_val_acc"] == pytest.approx(curve[-1])


def test_convergence_is_measured_against_the_restored_best_epoch(tmp_path):
    """Early stopping restored epoch 3 (0.9): 95% of it is 0.855, first reached at epoch 3, not
    at epoch 2 (0.8 >= 0.95 * the last epoch's 0.6)."""
    curve = [0.1, 0.5, 0.8, 0.9, 0.6]
    write_job(tmp_path / "job", epochs=4, curve=curve, val=True, best_epoch=3, stopped_epoch=4, restored_best=True)
    row = analysis.load([tmp_path]).runs.iloc[0]
    assert row["final_val_acc"] == pytest.approx(0.9)
    assert row["convergence_epoch"] == first_epoch_at_95(curve[:4]) == 3


@pytest.mark.parametrize("val", [True, False])
def test_the_best_is_never_below_the_final_when_the_init_was_restored(tmp_path, val):
    """lr 50 with early stopping: epoch 0 was the best and was restored; runs.csv read
    final_test_acc 0.172 beside best_test_acc 0.103 (the best over trained epochs only)."""
    curve = [0.172, 0.103, 0.1, 0.09]
    write_job(tmp_path / "job", epochs=3, curve=curve, val=val, best_epoch=0, stopped_epoch=3, restored_best=True)
    row = analysis.load([tmp_path]).runs.iloc[0]
    split = "val" if val else "test"
    assert row[f"final_{split}_acc"] == pytest.approx(0.172)
    assert row[f"best_{split}_acc"] == pytest.approx(0.172)
    for s in ("train", "test"):
        assert row[f"best_{s}_acc"] >= row[f"final_{s}_acc"] and row[f"best_{s}_loss"] <= row[f"final_{s}_loss"]


def test_a_diverged_run_has_no_convergence_speed(tmp_path):
    write_job(tmp_path / "job", epochs=3, status="diverged", curve=[0.1, 0.1, 0.1, 0.1])
    row = analysis.load([tmp_path]).runs.iloc[0]
    assert row["status"] == "diverged"
    assert all(np.isnan(row[c]) for c in analysis.SPEED_COLUMNS), row[list(analysis.SPEED_COLUMNS)]


def test_one_run_in_two_folders_is_counted_once(tmp_path):
    """A solo rerun of a sweep's job into another folder (other overrides' spelling, same settings)
    would be one more seed in every mean and interval; a run of another seed is not a twin."""
    write_job(tmp_path / "sweep" / "seed=1", seed=1, overrides=["seed=1"])
    write_job(tmp_path / "rerun", seed=1, overrides=["seed=01", "threads=1"])
    write_job(tmp_path / "sweep" / "seed=2", seed=2, overrides=["seed=2"])
    tables = analysis.load([tmp_path / "sweep", tmp_path / "rerun"])
    assert sorted(tables.runs["job"]) == ["rerun", "sweep/seed=2"]  # the first folder in path order kept
    assert [(s.job, s.reason) for s in tables.skipped] == [
        ("sweep/seed=1", "the same run as rerun (equal settings, seed included): counted once")]


def test_a_setting_some_runs_lack_is_not_shared_by_every_run():
    """mlp (width 128) beside cnn (no width): the report's header said model.width=nan."""
    runs = pd.DataFrame({"model.width": [128, np.nan], "depth": [3, 3], "seed": [0, 1]})
    assert report._shared(runs, list(runs.columns)) == "depth=3"


def test_a_switch_is_labelled_by_its_name_where_on_and_not_at_all_where_off(tmp_path):
    """A CNN beside a transformer with init.embedding=true: the CNN's legend read
    "orthogonal embedding=False"."""
    for model, on in (("transformer", True), ("cnn", False)):
        write_job(tmp_path / f"model={model}", model=model, init="orthogonal", init_params={"embedding": on},
                  overrides=[f"model={model}"])
    runs = analysis.load([tmp_path]).runs
    assert dict(zip(runs["model"], runs["init_label"])) == {"transformer": "orthogonal embedding",
                                                             "cnn": "orthogonal"}


def test_convergence_table_is_the_mean_over_seeds(tmp_path):
    curves = {0: [0.1, 0.5, 0.8, 0.9, 0.86], 1: [0.1, 0.95, 0.2, 0.3, 0.9]}
    for seed, curve in curves.items():
        write_job(tmp_path / f"s{seed}", seed=seed, epochs=4, curve=curve, val=True)
    table = report.convergence_table(analysis.load([tmp_path]))
    expected = np.mean([first_epoch_at_95(c) for c in curves.values()])
    assert table["measured on"].tolist() == ["validation"]
    assert table["convergence epoch"].iloc[0].startswith(f"{expected:.1f} ± ")
    assert table["trainable"].tolist() == ["2/2"]


def test_convergence_is_of_trainable_runs_and_a_shared_count_prints_as_an_integer(tmp_path):
    """The review's report: a run at chance 'converged' at epoch 3.0 ± 1.4 beside a trainable one,
    and parameters read 8970.000 ± 0.000. Now the untrainable seed is counted, not averaged."""
    write_job(tmp_path / "s0", seed=0, epochs=4, curve=[0.1, 0.5, 0.8, 0.9, 0.86])
    write_job(tmp_path / "s1", seed=1, epochs=4, curve=[0.1, 0.12, 0.11, 0.1, 0.12])
    tables = analysis.load([tmp_path])
    assert tables.runs.sort_values("seed")["trainable"].tolist() == [True, False]
    row = report.convergence_table(tables).iloc[0]
    assert (row["trainable"], row["never reached"]) == ("1/2", "0/1")
    assert row["convergence epoch"] == f"{first_epoch_at_95([0.1, 0.5, 0.8, 0.9, 0.86]):.1f}"
    assert report.configurations(tables).iloc[0]["parameters"] == "1000"


@pytest.mark.parametrize("val", [False, True])
def test_convergence_final_accuracy_is_of_the_runs_the_epoch_is_of(tmp_path, val):
    """The user test's report: 'trainable 1/2 ... final accuracy 0.222 ± 0.063 (n=2)' under a header
    saying mean ± std (n) over the trainable seeds: the final accuracy pooled every seed. Both columns
    now describe the trainable seeds, the final accuracy each convergence epoch is measured against
    (validation accuracy where the runs hold a split out). Seed 1 is at chance (test accuracy ~0.1)."""
    curves = {0: [0.1, 0.5, 0.8, 0.9, 0.86], 1: [0.1, 0.12, 0.11, 0.1, 0.12], 2: [0.1, 0.3, 0.5, 0.6, 0.7]}
    for seed, curve in curves.items():
        write_job(tmp_path / f"s{seed}", seed=seed, epochs=4, curve=curve, val=val,
                  gain=1e-3 if seed == 1 else None)  # with val, the curve is the validation accuracy
    tables = analysis.load([tmp_path])
    assert tables.runs.sort_values("seed")["trainable"].tolist() == [True, False, True]
    finals = np.array([curves[0][-1], curves[2][-1]])  # the trainable seeds' final validation/test accuracy
    epochs = np.array([first_epoch_at_95(curves[0]), first_epoch_at_95(curves[2])])
    row = report.convergence_table(tables).iloc[0]
    assert row["final accuracy"] == f"{finals.mean():.3f} ± {finals.std(ddof=1):.3f} (n=2)"  # 0.780 ± 0.113
    assert row["convergence epoch"] == f"{epochs.mean():.1f} ± {epochs.std(ddof=1):.1f} (n=2)"
    assert (row["trainable"], row["measured on"]) == ("2/3", "validation" if val else "test")
    (header,) = [b[1] for b in report._convergence_blocks(tables) if b[0] == "p"]
    assert ("The convergence epoch and the final accuracy it is measured against: mean ± std (n) over the "
            "trainable seeds only") in header


def test_summary_cells_say_how_many_runs_have_a_value(tmp_path):
    """The per-configuration summary said 'n = number of runs', but a diverged run has no final
    accuracy and was silently left out: one seed of two read '0.795', as a one-seed configuration.
    n now counts the runs with a value, 'of N' where some have none."""
    curves = {0: [0.1, 0.5, 0.8, 0.9, 0.86], 1: [0.1, 0.3, 0.5, 0.6, 0.7], 2: [0.1, 0.2, 0.3, 0.4, 0.5]}
    for seed, curve in curves.items():
        write_job(tmp_path / f"he{seed}", seed=seed, epochs=4, curve=curve,
                  status="diverged" if seed == 2 else "completed")
    for seed, curve in list(curves.items())[:2]:
        write_job(tmp_path / f"normal{seed}", init="normal", seed=seed, epochs=4, curve=curve,
                  status="diverged" if seed == 1 else "completed")
    tables = analysis.load([tmp_path])
    configs = report.configurations(tables).set_index("init")
    finals = np.array([curves[0][-1], curves[1][-1]])  # seed 2 diverged: no final accuracy
    assert configs.loc["he_normal", "final test acc"] == f"{finals.mean():.3f} ± {finals.std(ddof=1):.3f} (n=2 of 3)"
    assert configs.loc["normal", "final test acc"] == f"{curves[0][-1]:.3f} (n=1 of 2)"
    assert configs.loc["normal", "runs"] == 2
    blocks = report._blocks(tables, [], ["x"], "analyze.py x", [])
    header = next(blocks[i + 1][1] for i, b in enumerate(blocks) if b[:2] == ("h2", "Per-configuration summary"))
    assert "n = the runs with a value, 'n=1 of 2' where a run has none" in header


def test_the_report_writes_numbers_as_the_figures_do(tmp_path):
    """The report's hint said "narrow with e.g. `optimizer.lr=100000.0`" and its shared settings
    "model.width=128.0" (an integer column with gaps reads as floats), under figures titled 100000."""
    for lr in (0.01, 100000.0):
        write_job(tmp_path / f"lr{lr}", optimizer_params={"lr": lr})
    tables = analysis.load([tmp_path])
    tables.runs["model.width"] = 128.0
    blocks = report._blocks(tables, [], ["x"], "analyze.py x", [])
    text = report._md(blocks) + report._html(blocks, tmp_path)
    assert "narrow with e.g. `optimizer.lr=0.01`" in text or "narrow with e.g. `optimizer.lr=100000`" in text
    assert "width=128," in text or "width=128)" in text
    assert "<td>100000</td>" in text and "<td>0.01</td>" in text  # to_html: 100000.00 and 0.01
    assert "100000.0" not in text and "128.0" not in text


def test_the_report_names_every_shared_setting_with_its_parameters(tmp_path):
    """A CNN sweep's report said "Settings shared by every run: activation=relu, depth=4, dataset=digits,
    ..." from a fixed list of eleven keys: no model=cnn, no channels, as if it were the default MLP."""
    for init in ("he_normal", "xavier_normal"):
        write_job(tmp_path / init, init=init, model="cnn", model_params={"channels": [4, 8], "norm": "none"})
    tables = analysis.load([tmp_path])
    line = next(b[1] for b in report._blocks(tables, [], ["x"], "analyze.py x", [])
                if b[0] == "p" and b[1].startswith("Settings shared"))
    assert "model=cnn (" in line and "channels=[4, 8]" in line and "norm=none" in line
    assert "optimizer=sgd (lr=0.01, momentum=0, nesterov=false, weight_decay=0)" in line
    assert ", init=" not in line and "init.factor" not in line  # varied, or an option's parameter that varies


# --- figures --------------------------------------------------------------------------------------
def kept_plotter(root: Path, out: Path, **kw) -> Plotter:
    plotter = Plotter(analysis.load([root]), out, strict=True, **kw)
    plotter.kept, plotter.dpi = {}, 40
    return plotter


def test_after_training_is_the_final_model_the_tables_describe(tmp_path):
    """A cnn sweep with early stopping: act_std_vs_layer's "after training" panel drew the last
    trained epoch (4) while runs.csv's final metrics were the restored best epoch's (2)."""
    root = tmp_path / "sweep"
    write_job(root / "seed=0", seed=0, depth=3, epochs=4, val=True, best_epoch=2, stopped_epoch=4,
              restored_best=True, overrides=["seed=0"])
    write_job(root / "seed=1", seed=1, depth=3, epochs=4, val=True, overrides=["seed=1"])
    write_job(root / "seed=2", seed=2, depth=3, epochs=3, val=True, best_epoch=0, stopped_epoch=3,
              restored_best=True, overrides=["seed=2"])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    plotter = kept_plotter(root, tmp_path / "out")
    rows = plotter._detail_layers()
    when = {(job.split("=")[-1], w): sorted(set(part["epoch"])) for (job, w), part in rows.groupby(["job", "when"])}
    assert when[("0", "end of training")] == [2] and when[("0", "middle of training")] == [2]
    assert when[("1", "end of training")] == [4] and when[("1", "middle of training")] == [2]
    assert when[("2", "end of training")] == [0] and when[("2", "at init")] == [0]  # restored to its init


@pytest.mark.parametrize("stopped", [True, False])
def test_curves_say_when_later_epochs_average_fewer_seeds(tmp_path, stopped):
    """Seed 1 stopped at epoch 3 of 4: the epoch-4 point was seed 0 alone, its band gone, under a
    caption that still read "mean over seeds with the 95% t-interval"."""
    root = tmp_path / "sweep"
    for seed in (0, 1):
        end = 3 if stopped and seed == 1 else 4
        write_job(root / f"seed={seed}", seed=seed, epochs=end, planned_epochs=4, val=True, overrides=[f"seed={seed}"],
                  **({"best_epoch": 2, "stopped_epoch": 3} if end == 3 else {}))
    (root / "multirun.yaml").write_text("hydra: {}\n")
    [figure] = kept_plotter(root, tmp_path / "out").curves("activation")
    assert ("Where a seed's run ended earlier (early stopping or divergence), the later points average the seeds "
            "still training, and one seed draws no band." in figure.caption) == stopped
    assert "Accuracy: mean over seeds with the 95% t-interval" in figure.caption


def test_curves_of_one_seed_claim_no_mean_over_seeds(tmp_path):
    write_job(tmp_path / "sweep" / "seed=0", seed=0, epochs=3, overrides=["seed=0"])
    [figure] = kept_plotter(tmp_path / "sweep", tmp_path / "out").curves("activation")
    assert "One run per line (one seed: no interval)." in figure.caption and "mean over seeds" not in figure.caption


def test_plain_vs_residual_points_are_the_mean_over_seeds(tmp_path):
    root = model_sweep(tmp_path / "sweep", depths=(2, 6, 12), seeds=(0, 1, 2))
    plotter = kept_plotter(root, tmp_path / "out")
    [figure] = plotter.plain_vs_residual()
    assert figure.path == "figures/plain_vs_residual.png" and (tmp_path / "out" / figure.path).is_file()
    # independent: result.json of every job, averaged with NumPy
    finals = {}
    for job in root.iterdir():
        if (job / "result.json").is_file():
            result = json.loads((job / "result.json").read_text())
            key = (result["choices"]["model"]["name"], result["choices"]["depth"])
            finals.setdefault(key, []).append(result["final"]["test_acc"])
    [ax] = plotter.kept["plain_vs_residual"].axes
    lines = [line for line in ax.lines if len(line.get_xdata()) == 3]
    assert len(lines) == 2
    for model in ("mlp", "resmlp"):
        expected = [np.mean(finals[(model, d)]) for d in (2, 6, 12)]
        assert any(np.allclose(line.get_ydata(), expected) for line in lines), model
    legend = [t.get_text() for t in plotter.kept["plain_vs_residual"].legends[0].get_texts()]
    assert legend == ["mlp", "resmlp"]


def test_no_figure_pools_different_models(tmp_path):
    root = model_sweep(tmp_path / "sweep", depths=(2, 4), seeds=(0,))
    plotter = kept_plotter(root, tmp_path / "out")
    figures = plotter.all()
    assert plotter.not_drawn == []
    across = {f.files.removesuffix(".png") for f in FAMILIES if f.across_models}
    names = [Path(f.path).stem for f in figures]
    # the comparison figures once, without a model in the name; every other one per model
    assert {"grid_test_accuracy", "accuracy_vs_depth", "plain_vs_residual", "grad_norm_per_epoch"} <= set(names)
    per_model = [n for n in names if n not in across]
    assert per_model and all(n.endswith(("_model=mlp", "_model=resmlp")) for n in per_model)
    # the check that guards every figure: grouping without the model raises
    with pytest.raises(PoolingError, match="model"):
        plotter._check_pooling(plotter.runs, ["activation", "init", "depth"])
    plotter._check_pooling(plotter.runs, ["activation", "init", "depth", "model"])
    # the grid: a panel per activation and model
    grid = plotter.kept["grid_test_accuracy"]
    titles = [" ".join(ax.get_title().split()) for ax in grid.axes if ax.get_visible() and ax.get_title()]
    assert titles == ["relu, mlp", "relu, resmlp"]


def test_grad_norm_per_epoch_lines_are_geometric_means(tmp_path):
    root = model_sweep(tmp_path / "sweep", models=("mlp",), depths=(3,), seeds=(0, 1))
    plotter = kept_plotter(root, tmp_path / "out")
    plotter.grad_norm_per_epoch()
    [ax] = plotter.kept["grad_norm_per_epoch"].axes
    epochs = pd.concat(pd.read_csv(j / "epochs.csv") for j in root.iterdir() if j.is_dir())
    expected = epochs[epochs["epoch"] >= 1].groupby("epoch")["grad_norm"].apply(lambda v: np.exp(np.log(v).mean()))
    [line] = [line for line in ax.lines if len(line.get_xdata()) == len(expected)]
    np.testing.assert_allclose(line.get_xdata(), expected.index)
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())


def test_per_site_axis_names_the_sites_of_a_non_mlp_model(tmp_path):
    write_job(tmp_path / "res", model="resmlp", depth=2, epochs=2)
    plotter = kept_plotter(tmp_path, tmp_path / "out")
    plotter.act_std_vs_layer()
    fig = plotter.kept["act_std_vs_layer_depth2"]
    shown = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
    hidden_sites = [s for s, k, _ in sites("resmlp", 2) if k == "hidden"]  # one kind of signal: the activations
    assert shown == hidden_sites == ["proj.act", "blocks.0.act"]
    assert fig.axes[-1].get_xlabel() == "site (forward order)"


def test_mlp_figures_keep_the_layer_axis(tmp_path):
    write_job(tmp_path / "mlp", depth=3, epochs=2)
    plotter = kept_plotter(tmp_path, tmp_path / "out")
    plotter.act_std_vs_layer()
    ax = plotter.kept["act_std_vs_layer_depth3"].axes[-1]
    assert ax.get_xlabel() == "layer"
    line = next(line for line in ax.lines if len(line.get_xdata()) > 1)
    assert list(line.get_xdata()) == [1, 2, 3]


# --- report and the command -----------------------------------------------------------------------
def test_report_says_why_predictions_are_empty_and_lists_convergence(tmp_path):
    root = model_sweep(tmp_path / "sweep", depths=(2,), seeds=(0,), val=True)
    assert analyze.main([str(root), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    theory = md.split("## Theory", 1)[1]
    assert f"- resmlp: {NO_THEORY}" in theory and "- mlp:" not in theory
    table = [line for line in theory.split("\n## ", 1)[0].splitlines() if line.startswith("| ")]
    assert any("| mlp" in line for line in table) and not any("resmlp" in line for line in table)  # was: ∞ ∞
    assert "## Convergence" in md and "validation accuracy reaches 95%" in md
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert {"model", "model.norm", "n_params", "convergence_epoch", "convergence_metric"} <= set(runs.columns)
    assert sorted(runs["model"]) == ["mlp", "resmlp"]


@pytest.mark.slow
def test_the_analysis_side_imports_no_torch(tmp_path):
    root = model_sweep(tmp_path / "sweep", depths=(2,), seeds=(0,))
    code = ("import sys, analyze; rc = analyze.main([sys.argv[1], '--out', sys.argv[2]]); "
            "import initlab.analysis.figures, initlab.analysis.report; "
            "assert rc == 0, rc; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    done = subprocess.run([sys.executable, "-c", code, str(root), str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


ARMS = {"relu_he": ("relu", "he_normal", "mlp"), "tanh_critical": ("tanh", "orthogonal", "mlp"),
        "tat_leaky_relu": ("leaky_relu", "orthogonal", "mlp"), "dks_tanh": ("tanh", "xavier_normal", "mlp"),
        "resmlp_batchnorm": ("relu", "he_normal", "resmlp")}


@pytest.mark.slow
def test_preset_arms_are_lines_of_one_plain_vs_residual_figure(tmp_path):
    """A preset group (conf/deep_plain/) names arms: one figure, one line per arm, not a figure per arm."""
    root = tmp_path / "sweep"
    for arm, (act, init, model) in ARMS.items():
        for depth in (2, 6):
            write_job(root / f"deep_plain={arm},depth={depth}", activation=act, init=init, model=model, depth=depth,
                      model_params={"norm": "batchnorm"} if model == "resmlp" else None,
                      presets={"deep_plain": arm}, overrides=[f"deep_plain={arm}", f"depth={depth}"])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    plotter = kept_plotter(root, tmp_path / "out")
    assert plotter.tables.presets == ["deep_plain"] and "deep_plain" not in plotter.tables.extra_keys
    [figure] = [f for f in plotter.all() if "plain_vs_residual" in f.path]
    assert figure.path == "figures/plain_vs_residual.png"
    [ax] = plotter.kept["plain_vs_residual"].axes
    assert len([line for line in ax.lines if list(line.get_xdata()) == [2, 6]]) == 5  # not the chance line
    legend = [t.get_text() for t in plotter.kept["plain_vs_residual"].legends[0].get_texts()]
    assert sorted(legend) == sorted(ARMS)
    assert not any("deep_plain=" in name for name in plotter.kept)
