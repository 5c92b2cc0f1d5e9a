"""Sizes that do not fit in memory: a one-line refusal naming the sizes asked for, before any
training. ``model.width=10000000000`` raised a 40-line RuntimeError from torch's allocator and
``dataset=shapes dataset.size=100000`` NumPy's MemoryError, each leaving a half-written job folder.
(A size that the allocator grants and the kernel later cannot back is killed by the kernel's
out-of-memory killer, which no process can catch.)"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator, Optional

from initlab.config import ConfigError

_TORCH_CPU = re.compile(r"can't allocate memory: you tried to allocate (\d+) bytes")
_NUMPY = re.compile(r"Unable to allocate (.+?)\.? (\w+) for an array with shape (\(.*?\))")


def _failed_allocation(err: BaseException) -> Optional[BaseException]:
    """The failed allocation ``err`` is or was raised from (torchinfo wraps it in "Failed to run
    torchinfo"), else None."""
    while err is not None:
        if _allocation(err):
            return err
        err = err.__cause__
    return None


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is, or was raised from, an allocation that failed or could not even be
    sized: NumPy's MemoryError and "array is too big" (ValueError), torch's CPU allocator ("can't
    allocate memory"), its "Storage size calculation overflowed" (width=1e17), or a device's "out
    of memory"."""
    return _failed_allocation(err) is not None


def _allocation(err: BaseException) -> bool:
    text = str(err)
    if isinstance(err, ValueError):
        return "array is too big" in text
    return isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and any(
        words in text for words in ("can't allocate memory", "out of memory", "Storage size calculation overflowed")))


def in_gib(n_bytes: int) -> str:
    """'2,384 GiB', '0.25 GiB': bytes in GiB, whole above 10."""
    gib = n_bytes / 2**30
    return f"{gib:,.0f} GiB" if gib >= 10 else f"{gib:.2g} GiB"


def machine_bytes() -> Optional[int]:
    """This machine's memory and swap together (bytes; /proc/meminfo's MemTotal + SwapTotal), the
    most any allocation can get: Linux's default overcommit refuses a larger one. None where
    /proc/meminfo cannot be read (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return sum(int(fields[key].split()[0]) * 1024 for key in ("MemTotal", "SwapTotal"))
    except (OSError, KeyError, ValueError):
        return None


def _asked(err: BaseException) -> str:
    """How much the failed allocation asked for, in words: '2,384 GiB for one tensor', '596 GiB for
    an array of shape (8, 100000, 100000)', else the allocator's own words."""
    found = _TORCH_CPU.search(str(err))
    if found:
        return f"{in_gib(int(found.group(1)))} for one tensor"
    found = _NUMPY.search(str(err))
    if found:
        return f"{found.group(1)} {found.group(2)} for an array of shape {found.group(3)}"
    if "overflowed" in str(err) or "too big" in str(err):
        return "more bytes than a size can count"
    return " ".join(str(err).split())[:160] or type(err).__name__


@contextmanager
def refused_if_too_large(what: str) -> Iterator[None]:
    """Turn an allocation that fails inside the block into ConfigError: '``what`` does not fit in
    memory (it asked for ...); valid: smaller sizes'. ``what`` names the choice and its sizes
    (``model=mlp (depth=5, width=10000000000)``). Other errors pass unchanged."""
    try:
        yield
    except (MemoryError, RuntimeError, ValueError) as err:
        if not out_of_memory(err):
            raise
        raise ConfigError(f"{what} does not fit in memory (it asked for {_asked(_failed_allocation(err))}); "
                          "valid: smaller sizes") from None
