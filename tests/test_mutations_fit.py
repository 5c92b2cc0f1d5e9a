"""The mutation check (tests/mutations.py) stays fitted to the code: every mutation's text occurs
exactly once in its file and its test selection names existing test files. A refactor that moves
the text makes a mutation "not applicable", which only a full `make mutate` run would show."""

from __future__ import annotations

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
