"""During a run, blocks of a few megabytes come from the heap, not a fresh mmap each."""

from __future__ import annotations

import ctypes

import pytest

from deai.sim.heap import _glibc, keep_freed_blocks


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mmapped_blocks(libc: ctypes.CDLL) -> int:
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().hblks)


def test_large_blocks_come_from_the_heap_inside_and_are_mapped_again_after() -> None:
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (mallopt, mallinfo2)")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size = 40 << 20  # above glibc's largest dynamic threshold (32 MB): mapped by default
    with keep_freed_blocks() as threshold:
        if threshold is None or threshold <= size:
            pytest.skip(f"this glibc took an mmap threshold of {threshold} bytes only")
        before = _mmapped_blocks(libc)
        p = libc.malloc(size)
        inside = _mmapped_blocks(libc) - before
        libc.free(p)
    # larger than the block freed inside (it may stay in a bin, not at the heap top, when
    # another thread allocated above it: that free block would serve a same-size request
    # under any threshold) and still below the raised threshold
    bigger = 56 << 20
    before = _mmapped_blocks(libc)
    p = libc.malloc(bigger)
    after = _mmapped_blocks(libc) - before
    libc.free(p)
    assert inside == 0  # served from the heap
    assert after == 1  # the defaults are back: a fresh mapping
