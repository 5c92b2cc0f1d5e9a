"""The mutation check (tests/mutations.py) stays fitted to the code: every mutation's text occurs
exactly once in its file and its test selection names existing test files. A refactor that moves
the text makes a mutation "not applicable", which only a full `make mutate` run would show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from mutations import MUTATIONS


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_every_mutation_matches_its_code_once(mutation):
    text = (ROOT / mutation.file).read_text()
    assert text.count(mutation.old) == 1, f"{mutation.name}: {mutation.old!r} occurs {text.count(mutation.old)}x"
    assert mutation.old != mutation.new
    files = [arg.split("::")[0] for arg in mutation.tests if arg.endswith(".py") or ".py::" in arg]
    assert files and all((ROOT / f).is_file() for f in files), mutation.tests


def test_mutation_names_are_distinct():
    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names))


ORPHAN = """
import os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from mutations import adopt_orphans, kill_leftovers
assert adopt_orphans()
# a child that starts a long sleep in the background and exits at once: the sleep is orphaned
subprocess.run(["sh", "-c", "sleep 300 & echo $!"], stdout=open("pid", "w"), check=True)
time.sleep(0.2)
print(kill_leftovers())
"""


def test_the_harness_kills_what_a_test_run_left_behind(tmp_path):
    """The mutant of joblib_workers_outlive_sweep left a killed sweep's loky workers training for
    minutes (their parent gone, re-parented to init): the harness adopts orphans and kills them."""
    done = subprocess.run([sys.executable, "-c", ORPHAN, str(ROOT / "tests")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists()
