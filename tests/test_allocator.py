"""initlab.train.allocator: glibc accepts the mmap and trim thresholds (a speed setting only)."""

from __future__ import annotations

import platform

import pytest

from initlab.train.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_thresholds_once_per_process():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True
