"""During a run, blocks of a few megabytes come from the heap, not a fresh mmap each."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deai.sim.heap import _glibc

# Run in a fresh interpreter: in a test worker that already ran other tests the heap holds
# free chunks of any size (torch, other threads), and a free chunk serves a large request
# under any threshold, so whether a block is mapped there says nothing about the thresholds.
_PROBE = r"""
import ctypes, json
from deai.sim.heap import _glibc, keep_freed_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = _glibc()
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
mapped = lambda: int(libc.mallinfo2().hblks)
size = 40 << 20  # above glibc's largest dynamic threshold (32 MB): mapped by default
with keep_freed_blocks() as threshold:
    before = mapped()
    p = libc.malloc(size)
    inside = mapped() - before
    libc.free(p)
bigger = 56 << 20  # larger than the block freed inside, below the raised threshold
before = mapped()
p = libc.malloc(bigger)
after = mapped() - before
libc.free(p)
print(json.dumps({"threshold": threshold, "inside": inside, "after": after}))
"""


def test_large_blocks_come_from_the_heap_inside_and_are_mapped_again_after() -> None:
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (mallopt, mallinfo2)")
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    if probe["threshold"] is None or probe["threshold"] <= 40 << 20:
        pytest.skip(f"this glibc took an mmap threshold of {probe['threshold']} bytes only")
    assert probe["inside"] == 0  # served from the heap
    assert probe["after"] == 1  # the defaults are back: a fresh mapping
