"""analyze.py end to end: a real tiny sweep on disk -> tables, figures and reports.

One sweep (digits, relu/tanh x he_normal/zero x depth 2/3, 2 epochs) plus one run that diverges
is trained once per module; the tests read it back and check the outputs against the job files.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, as_in_a_terminal, compose_config
from omegaconf import OmegaConf

import analyze
from initlab.analysis import tables as analysis

PNG = b"\x89PNG\r\n\x1a\n"
SETTINGS = ["dataset=digits", "epochs=2", "probe_size=200", "threads=1"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, train_pool) -> Path:
    """A 2x2x2 sweep and a diverging run (lr 50) side by side under one parent."""
    root = tmp_path_factory.mktemp("runs")
    calls = [train_pool("-m", *SETTINGS, "activation=relu,tanh", "init=he_normal,zero", "depth=2,3",
                        f"hydra.sweep.dir={root / 'sweep'}"),
             train_pool(*SETTINGS, "depth=2", "optimizer.lr=50", f"hydra.run.dir={root / 'diverged'}")]
    for call in calls:
        done = call.result()
        assert done.returncode == 0, done.describe()
    return root


@pytest.fixture(scope="module")
def analyzed(sweep) -> Path:
    done = subprocess.run([sys.executable, "analyze.py", str(sweep)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep / "analysis"


def _jobs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.rglob("result.json"))


def test_runs_table_matches_job_files(sweep, analyzed):
    runs = pd.read_csv(analyzed / "runs.csv")
    assert len(runs) == 9
    for col in ("job", "activation", "init", "depth", "seed", "init.factor", "optimizer.lr", "status", "trainable",
                "final_train_acc", "final_test_acc", "final_train_loss", "final_test_loss", "best_train_acc",
                "best_test_acc", "epochs_to_95_peak_train", "epochs_to_95_final_test", "wall_time", "s_per_epoch"):
        assert col in runs, col
    for job in _jobs(sweep):
        row = runs[runs["job"] == job.relative_to(sweep).as_posix()].iloc[0]
        result = json.loads((job / "result.json").read_text())
        epochs = pd.read_csv(job / "epochs.csv")
        trained = epochs[epochs["epoch"] >= 1]
        assert row["activation"] == result["choices"]["activation"]["name"]
        assert row["init"] == result["choices"]["init"]["name"]
        assert row["depth"] == result["choices"]["depth"]
        assert row["status"] == result["status"]
        for split in ("train", "test"):  # a diverged epoch's accuracy: null in result.json, empty in runs.csv
            recorded = result["final"][f"{split}_acc"]
            assert row[f"final_{split}_acc"] == pytest.approx(np.nan if recorded is None else recorded, nan_ok=True)
        assert row["best_test_acc"] == pytest.approx(trained["test_acc"].max(), nan_ok=True)
        peak = trained["train_acc"].max()
        if result["status"] == "diverged":  # no convergence to measure
            assert np.isnan(row["epochs_to_95_peak_train"]) and np.isnan(row["convergence_epoch"])
        else:
            assert row["epochs_to_95_peak_train"] == trained.loc[trained["train_acc"] >= 0.95 * peak, "epoch"].iloc[0]
        assert row["wall_time"] == pytest.approx(result["wall_time"])
        assert row["s_per_epoch"] == pytest.approx(trained["epoch_time"].mean())
        assert row["trainable"] == (result["status"] == "completed" and row["final_test_acc"] > 0.2)
    assert (runs.loc[runs["init"] == "zero", "trainable"] == False).all()  # noqa: E712
    assert runs.loc[runs["optimizer.lr"] == 50, "status"].tolist() == ["diverged"]


def _same(table_value, recorded) -> bool:
    """runs.csv against result.json, whose null is a non-finite number."""
    if recorded is None:
        return not np.isfinite(table_value)
    return table_value == pytest.approx(recorded, rel=1e-9, abs=1e-12)


def test_runs_table_carries_the_mean_field_phase(sweep, analyzed):
    runs = pd.read_csv(analyzed / "runs.csv")
    for job in _jobs(sweep):
        row = runs[runs["job"] == job.relative_to(sweep).as_posix()].iloc[0]
        result = json.loads((job / "result.json").read_text())
        for key in ("sigma_w2", "sigma_b2", "chi1", "q_star", "xi_q", "xi_c", "critical_sigma_w2"):
            assert _same(row[key], result["theory"][key]), (job.name, key, row[key], result["theory"][key])
        assert row["chance"] == pytest.approx(1 / result["data"]["n_classes"])
        layers = pd.read_csv(job / "layers.csv")
        hidden = layers[(layers["epoch"] == 0) & (layers["layer"] <= result["choices"]["depth"])]
        if (hidden["q_pred"] > 0).all():
            misfit = np.abs(np.log(hidden["preact_sq"] / hidden["q_pred"])).median()
            assert row["q_log_misfit"] == pytest.approx(misfit)
    he = runs[(runs["init"] == "he_normal") & (runs["activation"] == "relu")]
    assert (he["chi1"] == 1).all() and np.isinf(he["xi_c"]).all()  # relu-He is critical: xi_c infinite
    tanh = runs[(runs["init"] == "he_normal") & (runs["activation"] == "tanh")]
    assert (tanh["chi1"] > 1).all() and np.isfinite(tanh["xi_c"]).all()  # sigma_w^2 = 2: chaotic
    assert (runs["q_log_misfit"].dropna() < 0.5).all()


def test_long_tables_hold_every_row_with_choices(sweep, analyzed):
    for name in ("epochs.csv", "layers.csv"):
        table = pd.read_csv(analyzed / name)
        parts = []
        for job in _jobs(sweep):
            own = analysis.final_attempt(pd.read_csv(job / name), _final_attempt(job))
            parts.append(own.assign(job=job.relative_to(sweep).as_posix()))
        expected = pd.concat(parts)
        assert len(table) == len(expected)
        assert {"activation", "init", "depth", "seed"} <= set(table.columns)
        keys = ["job", "epoch"] + (["layer"] if name == "layers.csv" else [])
        merged = expected.merge(table, on=keys, suffixes=("", "_table"))
        assert len(merged) == len(expected)
        for col in own.columns.drop(keys[1:]):
            if pd.api.types.is_numeric_dtype(merged[col]):
                np.testing.assert_allclose(merged[col], merged[f"{col}_table"], equal_nan=True)
            else:  # site names and kinds
                assert merged[col].fillna("").tolist() == merged[f"{col}_table"].fillna("").tolist(), col


def _final_attempt(job: Path) -> int:
    """result.json ``final_attempt`` (0 for jobs recorded before restarts existed)."""
    return json.loads((job / "result.json").read_text()).get("final_attempt") or 0


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tags = [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


LR = "_optimizer.lr=0.01"  # the diverged run's lr 50 varies optimizer.lr: every figure is drawn per lr


def test_figures_and_self_contained_report(analyzed):
    figures = sorted((analyzed / "figures").glob("*.png"))
    names = {f.stem.removesuffix(LR) for f in figures if f.stem.endswith(LR)}
    for expected in ("grid_test_accuracy", "accuracy_vs_depth", "epochs_to_95_vs_depth", "act_std_vs_layer_depth3",
                     "grad_norm_vs_layer_depth3", "delta_rms_at_init_depth3", "dead_saturated_vs_layer_depth3",
                     "heatmap_act_std_relu_depth3", "heatmap_act_mean_tanh_depth3", "curves_activation_relu",
                     "curves_init_zero", "preact_sq_vs_theory_depth3", "delta_rms_vs_theory_depth3",
                     "jacobian_spectra", "jacobian_mean_sq_sv"):
        assert expected in names
    for fig in figures:
        data = fig.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, fig
    page = (analyzed / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    parser = _Images()
    parser.feed(page)
    assert {"html", "body", "table", "figure", "img"} <= parser.tags
    assert len(parser.images) == len(figures)
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    md = (analyzed / "report.md").read_text()
    assert md.count("](figures/") == len(figures)
    assert "| depth 2" in md and "Skipped jobs" in md and "†" in md
    assert "These runs also vary optimizer.lr: every figure is drawn once per value" in md
    not_drawn = md.split("## Figures not drawn\n\n", 1)[1].split("\n\n", 1)[0]
    assert not_drawn == ("- accuracy_vs_depth.png (optimizer.lr=50): no finite final train acc or final test acc: "
                         "every run diverged")  # its one run's accuracies are NaN, not argmax(NaN) = class 0
    theory = md.split("## Theory", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in theory.splitlines() if line.startswith("|"))
    assert "χ₁" in header and "ξ_c" in header and "q misfit" in header
    assert "| ∞" in theory and "| any" in theory  # relu-He: xi_c infinite, every length a fixed point
    for name in ("preact_sq_vs_theory_depth3", "delta_rms_vs_theory_depth3", "jacobian_spectra",
                 "jacobian_mean_sq_sv"):
        assert f"](figures/{name}{LR}.png)" in theory


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.5, 3.0])
def test_ctrl_c_stops_the_analysis_in_one_line(sweep, tmp_path, after):
    """Ctrl-C while analyze.py imported or drew printed the traceback of whatever ran; now one line,
    exit 130 (0.5 s: importing pandas; 3 s: drawing the figures)."""
    proc = subprocess.Popen([sys.executable, "analyze.py", str(sweep), "--out", str(tmp_path / "out")], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_in_a_terminal)
    time.sleep(after)
    assert proc.poll() is None, "the analysis ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in out + err, err[-3000:]
    assert err.splitlines()[-1] == analyze.INTERRUPTED


def test_bad_jobs_are_skipped_and_reported(sweep, tmp_path, caplog):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep / "sweep", copy, ignore=shutil.ignore_patterns("analysis"))
    jobs = _jobs(copy)
    layers = jobs[0] / "layers.csv"
    layers.write_bytes(layers.read_bytes()[: layers.stat().st_size // 2].rstrip(b"\n"))  # cut mid-row
    (jobs[1] / "result.json").unlink()
    (jobs[2] / "result.json").write_text('{"status": "comp')

    assert analyze.main([str(copy)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all(w.startswith("skipped ") and "\n" not in w for w in warnings)
    runs = pd.read_csv(copy / "analysis" / "runs.csv")
    assert len(runs) == 5
    md = (copy / "analysis" / "report.md").read_text()
    skipped = md.split("## Skipped jobs", 1)[1]
    assert f"- {jobs[0].name}: layers.csv is truncated" in skipped
    assert f"- {jobs[1].name}: unfinished: no result.json" in skipped
    assert f"- {jobs[2].name}: broken result.json" in skipped


def test_filters_and_unusable_folders(sweep, tmp_path, capsys):
    assert analysis.newest_sweep(sweep) == sweep / "sweep"  # the folder with multirun.yaml
    tables = analysis.load([sweep], {"activation": ["relu"], "depth": ["3"]})
    assert sorted(tables.runs["init"]) == ["he_normal", "zero"]
    assert set(tables.layers["depth"]) == {3}
    assert analyze.parse([str(sweep), "filter.init=zero", "--activation", "relu"]).filters == {
        "init": ["zero"], "activation": ["relu"]}
    (tmp_path / "empty").mkdir()
    for args in ([str(tmp_path / "empty")], [str(tmp_path / "missing")], [str(sweep), "colour=red"]):
        assert analyze.main(args) != 0
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_named_sweeps_compose():
    names = ("grid", "grid_quick", "he_factor", "sigmoid_long", "depth_scan")
    for name in names:
        cfg = compose_config(f"+experiment={name}")
        assert cfg.depth >= 1 and cfg.epochs >= 1, name
    grid = compose_config("+experiment=grid")
    assert (grid.dataset.name, grid.optimizer.lr, grid.batch_size, grid.epochs) == ("mnist", 0.01, 128, 50)
    sweeps = {name: OmegaConf.load(ROOT / f"conf/experiment/{name}.yaml").hydra.sweeper.params for name in names}
    assert len(sweeps["grid"].init.split(",")) == 8 and sweeps["grid"].depth == "5,10,20,30,40,50"
    assert sweeps["he_factor"]["init.factor"] == "0.5,1,2,4"
