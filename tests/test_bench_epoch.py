"""benchmarks/bench_epoch.py's options: a value it cannot time is refused in one line by ``parse``,
which ``main`` calls before any work. Its timings are never run here (a benchmark, not a test)."""

from __future__ import annotations

import sys

import pytest
import torch

from conftest import ROOT, argparse_refusal

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_epoch  # noqa: E402

BAD = [(["--repeats", "0"], "--repeats must be >= 1, got 0"),  # ran 32 s and printed inf, nanx, +nan%
       (["--repeats", "-1"], "--repeats must be >= 1, got -1"),
       (["--device", "foo"], "argument --device: invalid choice: 'foo' (choose from 'cpu', 'cuda')")]
if not torch.cuda.is_available():
    BAD.append((["--device", "cuda"], "--device cuda but no CUDA GPU is visible; valid: cpu, cuda"))


@pytest.mark.parametrize("args, message", BAD)
def test_bad_options_are_refused_in_one_line(capsys, args, message):
    assert argparse_refusal(bench_epoch.parse, args, capsys) == message
