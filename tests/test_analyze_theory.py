"""analyze.py's theory half on real runs: the phase diagram of a (shrunk) phase_diagram sweep,
and jobs recorded before the theory columns existed.

The sweep (tanh, sigma_b^2 = 0.05, sigma_w^2 = init.factor in {1.5, 3} x depth {2, 6}, one epoch)
runs once per module with the parallel launcher.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analyze
from initlab import theory
from initlab.analysis import report
from initlab.analysis import tables as analysis
from initlab.analysis.figures import THEORY, Plotter

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def phase_sweep(tmp_path_factory, train_pool) -> Path:
    root = tmp_path_factory.mktemp("phase") / "sweep"
    done = train_pool("-m", "+experiment=phase_diagram", "init.factor=1.5,3", "depth=2,6", "epochs=1",
                      "probe_size=200", "threads=1", "hydra/launcher=parallel", f"hydra.sweep.dir={root}").result()
    assert done.returncode == 0, done.describe()
    return root


@pytest.fixture(scope="module")
def phase_analyzed(phase_sweep) -> Path:
    """analyze.py's main in this process (tests/test_analyze.py runs analyze.py as a process)."""
    assert analyze.main([str(phase_sweep)]) == 0
    return phase_sweep / "analysis"


def test_phase_diagram_figure_and_theory_section(phase_sweep, phase_analyzed):
    runs = pd.read_csv(phase_analyzed / "runs.csv")
    assert len(runs) == 4
    np.testing.assert_allclose(runs["sigma_w2"], runs["init.factor"])  # he_normal on square layers
    np.testing.assert_allclose(runs["sigma_b2"], 0.05, rtol=1e-6)
    for _, row in runs.iterrows():
        xi_q, xi_c = theory.depth_scales("tanh", row["sigma_w2"], row["sigma_b2"])
        assert row["xi_c"] == pytest.approx(xi_c, rel=1e-6)
        assert row["chi1"] == pytest.approx(theory.chi1("tanh", row["sigma_w2"], row["sigma_b2"]), rel=1e-6)
    figure = phase_analyzed / "figures" / "phase_diagram_tanh_he_normal_sb2_0.05.png"
    assert figure.read_bytes().startswith(PNG) and figure.stat().st_size > 20000
    md = (phase_analyzed / "report.md").read_text()
    section = md.split("## Theory", 1)[1].split("\n## ", 1)[0]
    assert f"](figures/{figure.name})" in section and "6ξ_c" in section
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4 and "χ₁" in table[0]  # header, rule and a row per configuration


def _strip_theory(job: Path) -> None:
    """Make ``job`` look like one recorded before the theory columns and files existed."""
    result = json.loads((job / "result.json").read_text())
    del result["theory"], result["data"], result["rows"]  # rows came later still
    (job / "result.json").write_text(json.dumps(result))
    for name in ("layers.csv",):
        table = pd.read_csv(job / name)
        table.drop(columns=["q_pred", "delta_rms_pred"]).to_csv(job / name, index=False)
    (job / "jacobian.csv").unlink()
    (job / "jacobian_sv.csv").unlink()


def test_older_jobs_load_and_theory_figures_are_skipped(phase_sweep, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(phase_sweep, copy, ignore=shutil.ignore_patterns("analysis"))
    jobs = sorted(p.parent for p in copy.rglob("result.json"))
    for job in jobs:
        _strip_theory(job)
    tables = analysis.load([copy])
    assert len(tables.runs) == 4 and not tables.skipped
    assert "chi1" not in tables.runs and "q_log_misfit" not in tables.runs
    assert tables.jacobian is None and tables.spectra is None
    assert (tables.runs["chance"] == 0.1).all()  # digits, from the dataset name
    plotter = Plotter(tables, tmp_path / "out")
    for draw in (plotter.length_vs_theory, plotter.delta_vs_theory, plotter.jacobian_spectra,
                 plotter.jacobian_mean_sq, plotter.phase_diagram):
        assert draw() == []
    report.write(tables, [], tmp_path / "out", [str(copy)], "test")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Theory\n\nThese records carry no mean-field predictions" in md

    # one new job among old ones: its theory is drawn, the old ones' cells stay empty
    new = next(job for job in jobs if "depth=6" in job.name)  # the per-layer figures show the deepest
    shutil.rmtree(new)
    shutil.copytree(phase_sweep / new.name, new)
    tables = analysis.load([copy])
    assert tables.runs["chi1"].notna().sum() == 1
    plotter = Plotter(tables, tmp_path / "mixed")
    figures = plotter.length_vs_theory() + plotter.jacobian_spectra() + plotter.jacobian_mean_sq()
    assert len(figures) == 3 and {f.section for f in figures} == {THEORY}
    assert plotter.phase_diagram() == []  # a single sigma_w^2 is known
