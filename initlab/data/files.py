"""Datasets read from disk: where the files belong, what is wrong with them when they cannot be used,
and leaving no trace when they are missing."""

from __future__ import annotations

import re
from pathlib import Path

from initlab.data.tensors import DatasetUnavailable


def resolved_root(root: str) -> Path:
    return Path(root).expanduser().resolve()


def missing(name: str, root: Path, what: str, why: str = "") -> DatasetUnavailable:
    """The one-line error for absent files: the dataset, the folder searched, what belongs there."""
    return DatasetUnavailable(f"dataset {name}: files not found under {root}{why}; put {what} there or set "
                              f"dataset.root")


def unreadable(name: str, path: Path, why: str, what: str, download: bool = True) -> DatasetUnavailable:
    """The one-line error for files that are there but not usable (truncated, altered, wrong format);
    ``download``: whether the dataset can fetch them again (torchvision's sets; not IMDB)."""
    again = " (or remove it and set dataset.download=true)" if download else ""
    return DatasetUnavailable(f"dataset {name}: {path} {why}; replace it with its original from {what}{again}")


def one_line(err: Exception) -> str:
    """``err``'s whole message on one line (its type's name when it has none), for a reason that
    must not be cut off: why a file could not be read or unpacked."""
    return " ".join(str(err).split()) or type(err).__name__


def short_reason(err: Exception) -> str:
    """A few words for why a download failed: torchvision's message lists every mirror and URL."""
    text = one_line(err)
    found = re.search(r"<urlopen error (?:\[Errno [-\d]+\] )?(.+?)>", text)
    return (found.group(1) if found else text)[:50].strip() or type(err).__name__


def existing_dirs(root: Path) -> set[Path]:
    """``root``'s folders (and its ancestors) that exist now, so a failed load removes only its own."""
    dirs = {p for p in (root, *root.parents) if p.is_dir()}
    if root.is_dir():
        dirs.update(p for p in root.rglob("*") if p.is_dir())
    return dirs


def remove_new_empty_dirs(root: Path, existing: set[Path]) -> None:
    """Remove the empty folders a failed download created under (and including) ``root``."""
    top = root
    while top not in existing and top.parent not in existing:
        top = top.parent
    candidates = [top, *(p for p in top.rglob("*") if p.is_dir())] if top.is_dir() else []
    for folder in sorted(candidates, key=lambda p: len(p.parts), reverse=True):
        if folder not in existing and not any(folder.iterdir()):
            folder.rmdir()
