"""File names that fit the file system: one path component of at most 255 bytes, deterministic.

Job folders (initlab.sweeps.job_subdir) and figure files (initlab.analysis.figures) are named by
settings, which can be longer than a file name may be; both are cut here the same way. No torch
import: the analysis side uses it.
"""

from __future__ import annotations

import hashlib

NAME_MAX = 255  # bytes in one path component on Linux/macOS file systems (ext4, xfs, btrfs, APFS)
HASH_CHARS = 12


def fitted(name: str, limit: int = NAME_MAX) -> str:
    """``name`` unchanged when it fits in ``limit`` bytes, else its leading comma-separated items
    that fit (or, when the first alone is too long, its first characters) plus ``_`` and the
    first 12 hex digits of its SHA-256: distinct for distinct names up to the 48-bit hash."""
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:HASH_CHARS]
    room = limit - len(digest) - 1
    prefix = ""
    for item in name.split(","):
        longer = f"{prefix},{item}" if prefix else item
        if len(longer.encode()) > room:
            break
        prefix = longer
    if not prefix:  # the first item alone is too long: cut it on a character boundary
        prefix = name.encode()[:room].decode(errors="ignore")
    return f"{prefix}_{digest}"
