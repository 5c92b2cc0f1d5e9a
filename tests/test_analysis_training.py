"""The analysis of P7's records on jobfactory fakes, checked against independent pandas/NumPy
reads of the same files: the final attempt's rows, early stopping's columns in runs.csv, the
per-step figures (steps.csv), the quantile fan and histogram image (distributions.csv) and the
lr-per-epoch figure, and that none of them is drawn (nor reported missing) without their records.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.collections as mcoll
import numpy as np
import pandas as pd
import pytest

import analyze
from initlab.analysis import tables as analysis
from initlab.analysis.figures import Plotter
from initlab.analysis.figures.distributions import readable_sites
from jobfactory import write_job, write_sweep

NEW = ("lr_per_epoch", "step_records", "distribution_fans", "distribution_images")


def draw(root: Path, methods=NEW) -> tuple[Plotter, list]:
    plotter = Plotter(analysis.load([root]), root / "analysis", strict=True)
    plotter.kept, plotter.dpi = {}, 40
    return plotter, plotter._all_here([f for f in plotter.families if f.method in methods])


def test_tables_keep_only_the_final_attempt(tmp_path):
    job = write_job(tmp_path / "job", depth=3, epochs=3, attempts=3, steps_per_epoch=2, distributions=True)
    tables = analysis.load([tmp_path])
    for name, frame in (("epochs.csv", tables.epochs), ("layers.csv", tables.layers), ("steps.csv", tables.steps),
                        ("distributions.csv", tables.distributions)):
        raw = pd.read_csv(job / name)
        assert sorted(raw["attempt"].unique()) == [0, 1, 2]
        want = raw[raw["attempt"] == 2].drop(columns="attempt").reset_index(drop=True)
        got = frame[want.columns].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
        assert "attempt" not in frame
    run = tables.runs.iloc[0]
    raw = pd.read_csv(job / "epochs.csv")
    assert (run["final_attempt"], run["n_attempts"]) == (2, 3)
    assert run["final_test_acc"] == pytest.approx(raw[raw["attempt"] == 2]["test_acc"].iloc[-1])
    assert run["final_test_acc"] != pytest.approx(raw[raw["attempt"] == 0]["test_acc"].iloc[-1])  # stalled at 0.1


def test_a_final_attempt_other_than_the_last_is_the_one_read(tmp_path):
    """result.json says which attempt is final; the tables follow it, not the highest number."""
    job = write_job(tmp_path / "job", epochs=2, attempts=2)
    result = json.loads((job / "result.json").read_text())
    result["final_attempt"] = 0
    (job / "result.json").write_text(json.dumps(result))
    tables = analysis.load([tmp_path])
    raw = pd.read_csv(job / "epochs.csv")
    assert tables.epochs["test_acc"].tolist() == pytest.approx(raw[raw["attempt"] == 0]["test_acc"].tolist())
    assert tables.runs.iloc[0]["final_attempt"] == 0 and tables.runs.iloc[0]["n_attempts"] == 2


def test_files_without_the_attempt_column_are_attempt_0(tmp_path):
    write_job(tmp_path / "old", epochs=2, attempt_column=False)
    tables = analysis.load([tmp_path])
    run = tables.runs.iloc[0]
    assert not tables.skipped
    assert (run["final_attempt"], run["n_attempts"]) == (0, 1)
    assert pd.isna(run["best_epoch"]) and pd.isna(run["stopped_epoch"]) and pd.isna(run["restored_best"])
    assert len(tables.epochs) == 3 and tables.steps is None and tables.distributions is None


def test_restored_best_gives_the_best_epochs_metrics(tmp_path):
    job = write_job(tmp_path / "job", epochs=5, best_epoch=2, stopped_epoch=5, restored_best=True)
    run = analysis.load([tmp_path]).runs.iloc[0]
    raw = pd.read_csv(job / "epochs.csv").set_index("epoch")
    assert (run["best_epoch"], run["stopped_epoch"], bool(run["restored_best"])) == (2, 5, True)
    assert run["epochs_run"] == 5
    assert run["final_test_acc"] == pytest.approx(raw.loc[2, "test_acc"])
    assert run["final_train_loss"] == pytest.approx(raw.loc[2, "train_loss"])


def test_restored_best_without_a_stop_reads_every_epoch(tmp_path):
    """Early stopping that never fired still restores the best epoch: result.json ``final`` is then
    an earlier epoch than the file's last, and the job is read, not skipped."""
    job = write_job(tmp_path / "job", epochs=4, best_epoch=1, stopped_epoch=None, restored_best=True)
    tables = analysis.load([tmp_path])
    assert not tables.skipped
    run = tables.runs.iloc[0]
    raw = pd.read_csv(job / "epochs.csv").set_index("epoch")
    assert run["epochs_run"] == 4 and len(tables.epochs) == 5
    assert run["final_test_acc"] == pytest.approx(raw.loc[1, "test_acc"])


def test_runs_csv_writes_epoch_numbers_as_integers_with_empty_cells_where_none(tmp_path):
    """One run stopped at epoch 3, one went to its epochs: stopped_epoch 3 and an empty cell, not
    3.0 and nan (pandas stores a column with a gap as floats)."""
    write_job(tmp_path / "sweep" / "a", epochs=3, best_epoch=2, stopped_epoch=3, restored_best=True, seed=0)
    write_job(tmp_path / "sweep" / "b", epochs=4, best_epoch=1, stopped_epoch=None, restored_best=True, seed=1)
    assert analyze.main([str(tmp_path / "sweep")]) == 0
    with open(tmp_path / "sweep" / "analysis" / "runs.csv", newline="") as f:
        rows = {row["job"]: row for row in csv.DictReader(f)}
    assert (rows["a"]["stopped_epoch"], rows["b"]["stopped_epoch"]) == ("3", "")
    assert (rows["a"]["best_epoch"], rows["a"]["epochs_run"], rows["a"]["n_attempts"]) == ("2", "3", "1")


def test_readable_sites_are_first_middle_last_hidden():
    frame = pd.DataFrame({"site": [f"hidden.{i}.act" for i in range(7)] + ["output"],
                          "kind": ["hidden"] * 7 + ["output"], "index": range(8)})
    assert readable_sites(frame) == (["hidden.0.act", "hidden.3.act", "hidden.6.act"], 7)
    assert readable_sites(frame.iloc[[0, 1, 7]]) == (["hidden.0.act", "hidden.1.act"], 2)


@pytest.fixture(scope="module")
def p7_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("p7")
    write_sweep(root, activations=("relu",), inits=("he_normal", "xavier_normal"), depths=(5,), seeds=(0, 1),
                epochs=3, steps_per_epoch=3, distributions=True, attempts=2, lr=[0.1, 0.1, 0.05, 0.01])
    return root, *draw(root)


def test_fan_band_edges_are_the_recorded_quantiles(p7_sweep):
    root, plotter, figures = p7_sweep
    assert "figures/distribution_fan_relu_he_normal_depth5.png" in [f.path for f in figures]
    caption = next(f.caption for f in figures if "fan_relu_he_normal" in f.path)
    assert "first, middle and last of 5 hidden sites (hidden.0.act, hidden.2.act, hidden.4.act)" in caption
    raw = pd.read_csv(root / "activation=relu,depth=5,init=he_normal,seed=0" / "distributions.csv")
    raw = raw[(raw["attempt"] == 1) & (raw["stat"] != "hist")]
    fig = plotter.kept["distribution_fan_relu_he_normal_depth5"]
    axes = np.array(fig.axes).reshape(3, 3)
    for r, tensor in enumerate(("weight", "preact", "act")):
        for c, site in enumerate(("hidden.0.act", "hidden.2.act", "hidden.4.act")):
            ax = axes[r, c]
            q = raw[(raw["site"] == site) & (raw["tensor"] == tensor)].pivot(index="epoch", columns="stat",
                                                                              values="value")
            bands = [p for p in ax.collections if isinstance(p, mcoll.PolyCollection)]
            assert [b.get_label() for b in bands] == ["1-99%", "5-95%", "25-75%"]
            for band, (lo, hi) in zip(bands, (("q01", "q99"), ("q05", "q95"), ("q25", "q75"))):
                vertices = band.get_paths()[0].vertices
                for epoch in q.index:
                    ys = vertices[np.isclose(vertices[:, 0], epoch), 1]
                    assert ys.min() == pytest.approx(q.loc[epoch, lo]) and ys.max() == pytest.approx(q.loc[epoch, hi])
            median = ax.lines[0]
            np.testing.assert_allclose(median.get_xdata(), q.index)
            np.testing.assert_allclose(median.get_ydata(), q["q50"])


def test_histogram_image_pixels_are_the_recorded_fractions(p7_sweep):
    root, plotter, _ = p7_sweep
    raw = pd.read_csv(root / "activation=relu,depth=5,init=xavier_normal,seed=0" / "distributions.csv")
    raw = raw[(raw["attempt"] == 1) & (raw["stat"] == "hist")]
    fig = plotter.kept["distribution_hist_relu_xavier_normal_depth5"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["hidden.0.act", "hidden.2.act", "hidden.4.act"]
    for ax in panels:
        site = raw[raw["site"] == ax.get_title()]
        want = np.zeros((40, 4))
        bins = np.searchsorted(np.linspace(-4, 4, 41), site["bin_lo"].to_numpy())
        want[bins, site["epoch"].to_numpy()] = site["value"].to_numpy()
        mesh = next(c for c in ax.collections if isinstance(c, mcoll.QuadMesh))
        np.testing.assert_allclose(np.ma.filled(mesh.get_array(), 0.0).reshape(40, 4), want)
        np.testing.assert_allclose(mesh.get_coordinates()[:, 0, 1], np.linspace(-4, 4, 41))
        np.testing.assert_allclose(want.sum(axis=0), 1.0)  # every entry counted (end bins clip)


def test_step_loss_and_lr_lines_are_means_over_seeds(p7_sweep):
    root, plotter, _ = p7_sweep
    fig = plotter.kept["steps_loss_depth5"]
    loss_ax, lr_ax = fig.axes[0], fig.axes[1]
    runs = [pd.read_csv(root / f"activation=relu,depth=5,init=he_normal,seed={s}" / "steps.csv") for s in (0, 1)]
    per_step = [r[r["attempt"] == 1].drop_duplicates("step").set_index("step") for r in runs]
    want = np.exp((np.log(per_step[0]["loss"]) + np.log(per_step[1]["loss"])) / 2)
    line = next(l for l in loss_ax.lines if l.get_label() == "he_normal")
    np.testing.assert_allclose(line.get_xdata(), want.index)
    np.testing.assert_allclose(line.get_ydata(), want.to_numpy())
    lr_line = next(l for l in lr_ax.lines if l.get_label() == "he_normal")
    np.testing.assert_allclose(lr_line.get_ydata(), [0.1] * 3 + [0.05] * 3 + [0.01] * 3)


def test_layer_grad_lines_follow_each_site(p7_sweep):
    root, plotter, _ = p7_sweep
    fig = plotter.kept["steps_grad_norm_depth5"]
    ax = fig.axes[0]  # relu, he_normal
    runs = [pd.read_csv(root / f"activation=relu,depth=5,init=he_normal,seed={s}" / "steps.csv") for s in (0, 1)]
    runs = [r[r["attempt"] == 1] for r in runs]
    assert [l.get_label() for l in ax.lines] == [*(f"hidden.{i}.act" for i in range(5)), "output"]
    for line in ax.lines:
        a, b = (r[r["site"] == line.get_label()].set_index("step")["grad_norm"] for r in runs)
        np.testing.assert_allclose(line.get_ydata(), np.sqrt(a * b))


def test_lr_figure_draws_each_runs_schedule(p7_sweep):
    _, plotter, figures = p7_sweep
    assert "figures/lr_per_epoch.png" in [f.path for f in figures]
    ax = plotter.kept["lr_per_epoch"].axes[0]
    lines = [l for l in ax.lines if len(l.get_xdata()) == 4]
    assert len(lines) == 4  # one per run: 2 inits x 2 seeds
    for line in lines:
        np.testing.assert_allclose(line.get_ydata(), [0.1, 0.1, 0.05, 0.01])


def test_nothing_drawn_nor_missing_without_the_records(tmp_path):
    write_sweep(tmp_path, inits=("he_normal", "xavier_normal"), epochs=2)
    plotter, figures = draw(tmp_path)
    assert figures == [] and plotter.not_drawn == []


def test_p7_figures_are_readable(p7_sweep):
    """The house readability check (tests/test_figures.py) on every new figure: no text on top of
    another, labelled log ticks, distinct panel titles, at most 9.5 inches wide."""
    from test_figures import _check_readable

    _, plotter, figures = p7_sweep
    assert len(figures) == 1 + 2 + 2 + 2  # lr; loss and grad steps; a fan and an image per init
    _check_readable(plotter.kept)
