"""Keep freed host memory in the process instead of handing it back to the OS after each step.

glibc's malloc serves blocks above its mmap threshold (128 KiB at start) with fresh mmap'ed pages
and returns them on free, so every activation of a training step (a (K, 128, 128) float block is
512 KiB) is page-faulted in again: on the 2-core benchmark machine a depth-50 ensemble step took
about three times as many minor page faults, and its first write to each new buffer (baddbmm's
bias copy, ReLU's output) ran at a tenth of its speed from cache (benchmarks/README.md). Raising
the mmap and trim thresholds (mallopt(3)) lets the heap reuse those blocks, as jemalloc or
tcmalloc would; PyTorch's CPU allocator itself has no cache.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Optional

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 * 2**20   # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 2**30        # keep up to 1 GiB of freed heap before trimming

_result: Optional[bool] = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds, once per process (later calls return the first
    answer); False where the C library is not glibc (macOS, musl) or refuses, which changes speed
    only, never results."""
    global _result
    if _result is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
            _result = (bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
                       and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
        except (OSError, AttributeError):
            _result = False
        if not _result:
            log.debug("mallopt not available: freed memory goes back to the OS as usual")
    return _result
