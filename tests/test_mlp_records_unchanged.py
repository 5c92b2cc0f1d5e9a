"""MLP records are unchanged by the model-agnostic core (P6): same seed, same values.

``tests/data/mlp_before_p6`` holds the records of a small job (digits, depth 3, width 32, 2
epochs, seed 0, Jacobian every epoch) written by the code before measurement moved onto sites.
The same job now must reproduce every column those files had, value for value. On the CPU that
wrote them (an Intel Xeon) the values were bitwise equal; another CPU's BLAS picks other float32
kernels (AMD EPYC, AVX2: test_loss differs by 7e-8 relative at epoch 0, a Jacobian's smallest
singular values, at float32's noise floor, by 1e-8 absolute), so floats agree to float32 rounding:
1e-5 relative, and 1e-9 absolute (1e-6 for the Jacobians' singular values, of order 1). Only
``epoch_time`` (a wall-clock time) is exempt. New columns (layers.csv's site/kind/index,
epochs.csv's grad_norm) come after the old ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import compose_config, read_csv, run_job

BEFORE = Path(__file__).parent / "data" / "mlp_before_p6"
JOB = ["dataset=digits", "depth=3", "model.width=32", "epochs=2", "seed=0", "threads=1", "jacobian_every=1",
       "device=cpu"]


@pytest.fixture(scope="module")
def after(tmp_path_factory):
    job_dir = tmp_path_factory.mktemp("after")
    run_job(compose_config(*JOB), job_dir)
    return job_dir


def same(old: str, new: str, abs_tol: float = 1e-9) -> bool:
    """Equal strings, or numbers equal to float32 rounding across CPUs (see the module docstring)."""
    if old == new:
        return True
    try:
        return math.isclose(float(old), float(new), rel_tol=1e-5, abs_tol=abs_tol)
    except ValueError:
        return False


@pytest.mark.parametrize("name", ["epochs.csv", "layers.csv", "jacobian.csv", "jacobian_sv.csv"])
def test_every_old_column_has_the_same_values(after, name):
    old, new = read_csv(BEFORE / name), read_csv(after / name)
    assert len(new) == len(old)
    columns = list(old[0])
    assert list(new[0])[:len(columns)] == columns, "old columns keep their order, new ones come after"
    for i, (o, n) in enumerate(zip(old, new)):
        for column in columns:
            if column != "epoch_time":
                tol = 1e-6 if name.startswith("jacobian") else 1e-9
                assert same(o[column], n[column], tol), f"{name} row {i} {column}: {n[column]} != {o[column]}"


def test_result_keeps_its_values_and_gains_n_params_and_theory_reason(after):
    old, new = json.loads((BEFORE / "result.json").read_text()), json.loads((after / "result.json").read_text())
    assert new["theory"] == old["theory"]
    assert new["rows"] == old["rows"]
    final = {k: v for k, v in new["final"].items() if k not in ("epoch_time", "grad_norm", "attempt")}
    assert final.keys() == old["final"].keys() - {"epoch_time"}
    assert all(same(repr(old["final"][k]), repr(v)) for k, v in final.items()), final
    assert new["n_params"] == (64 * 32 + 32) + 2 * (32 * 32 + 32) + (32 * 10 + 10)
    assert new["theory_reason"] is None


def test_layers_name_their_sites(after):
    rows = [r for r in read_csv(after / "layers.csv") if r["epoch"] == "0"]
    assert [(r["site"], r["kind"], r["index"], r["layer"]) for r in rows] == [
        ("acts.0", "hidden", "0", "1"), ("acts.1", "hidden", "1", "2"), ("acts.2", "hidden", "2", "3"),
        ("output", "output", "3", "4")]
