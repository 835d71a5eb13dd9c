"""Keep freed CPU memory in the process, so that training steps stop paying for page faults.

PyTorch's CPU allocator is the C library's malloc. glibc serves large blocks (the [tokens, vocab] logits and
their gradient are 64 MiB at nano size) with a fresh mmap and gives them back with munmap when freed, so every
training step touches brand-new pages: on the 2-core machine the LM head's forward matmul took 90 ms instead of
52 ms, and a whole nano step 7-17% longer (docs/benchmarks.md). Turning mmap off for allocations and
never trimming the heap makes a step reuse the memory of the previous one: the process keeps its peak
footprint instead of returning it between steps, which a training process needs again a moment later anyway.
This is what PyTorch's CPU tuning guide gets by preloading jemalloc or tcmalloc, without a preload.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h> parameter numbers
_M_MMAP_MAX = -4
_TRIM_NEVER = 2**31 - 1  # mallopt takes an int: the largest threshold it accepts

_applied = False


def retain_freed_memory() -> bool:
    """Tell glibc's malloc to serve every block from the heap and keep what is freed; False where not glibc.

    Process-wide and idempotent. Other C libraries (musl, macOS, Windows) have no `mallopt`; there it is a no-op.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success. If the heap cannot grow (brk fails), glibc still falls back to mmap.
    _applied = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER) == 1
    return _applied
