"""The report's grid table over seeds: each cell is the mean ± the 95% t-interval's half-width with
the number of seeds, checked against scipy.stats.t.interval on the runs' own values."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from jobfactory import write_job, write_sweep
from scipy import stats

from initlab.analysis import report
from initlab.analysis import tables as analysis

CELL = re.compile(r"^(?P<mean>\d\.\d{3}) ± (?P<half>\d\.\d{3}) \(n=(?P<n>\d+)\)$")


def scipy_cell(values: np.ndarray) -> str:
    """The expected text, from scipy's own interval (not the code's t95)."""
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    return f"{values.mean():.3f} ± {(high - low) / 2:.3f} (n={len(values)})"


def test_grid_cells_are_mean_and_95_interval_over_seeds(tmp_path):
    """3 seeds of 2 inits x 2 depths: every cell equals scipy's interval on that cell's runs."""
    root = write_sweep(tmp_path / "sweep", inits=("he_normal", "xavier_normal"), depths=(3, 10), seeds=(0, 1, 2),
                       epochs=3)
    tables = analysis.load([root])
    grid = report.grid_table(tables).set_index("init")
    assert list(grid.columns) == ["depth 3", "depth 10"]
    runs = tables.runs
    for init in ("he_normal", "xavier_normal"):
        for depth in (3, 10):
            values = runs.loc[(runs["init"] == init) & (runs["depth"] == depth), "final_test_acc"].to_numpy()
            assert len(values) == 3 and values.std() > 0, "the fabricated seeds must differ"
            cell = grid.loc[init, f"depth {depth}"].replace(" ✗", "")
            assert cell == scipy_cell(values)
            assert CELL.match(cell)["n"] == "3"


def test_each_cell_counts_its_own_seeds(tmp_path):
    """A cell with 2 seeds and one with 1 seed: n per cell; one seed is shown as its value, no interval."""
    for seed in (0, 1):
        write_job(tmp_path / f"he_{seed}", init="he_normal", depth=3, seed=seed)
    write_job(tmp_path / "xavier_0", init="xavier_normal", depth=3, seed=0)
    tables = analysis.load([tmp_path])
    grid = report.grid_table(tables).set_index("init")
    runs = tables.runs.set_index(["init", "seed"])["final_test_acc"]
    assert grid.loc["he_normal", "depth 3"].startswith(scipy_cell(runs.loc["he_normal"].to_numpy()))
    assert grid.loc["xavier_normal", "depth 3"].startswith(f"{runs.loc[('xavier_normal', 0)]:.3f} (n=1)")


@pytest.mark.parametrize("values, expected", [
    ([0.5, 0.7, np.nan], "0.600 ± {half:.3f} (n=2 of 3)"),  # a run without a value is not counted, but told
    ([0.8, 0.8, 0.8], "0.800 ± 0.000 (n=3)"),  # identical seeds: a zero-width interval
    ([np.nan, np.nan], ""),
])
def test_interval_cell_counts_values_it_averages(values, expected):
    half = stats.t.ppf(0.975, 1) * np.std([0.5, 0.7], ddof=1) / np.sqrt(2)
    assert report.interval_cell(pd.Series(values, dtype=float)) == expected.format(half=half)


def test_report_names_the_interval(tmp_path):
    root = write_sweep(tmp_path / "sweep", inits=("he_normal",), depths=(3,), seeds=(0, 1, 2))
    tables = analysis.load([root])
    report.write(tables, [], tmp_path, [str(root)], "test")
    md = (tmp_path / "report.md").read_text()
    section = md.split("## Final test accuracy", 1)[1].split("##", 1)[0]
    assert "95% t-interval" in section and "(n=3)" in section
