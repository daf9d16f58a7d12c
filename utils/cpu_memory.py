"""glibc allocator settings for running networks on the CPU: a process-wide choice the scripts make at start-up."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

# <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of handing it back to the operating system.

    A training step (or one image's inference) frees and re-allocates the same activation tensors every time. By
    default glibc serves every large block (above its mmap threshold, at most 32 MiB) with a fresh mmap and unmaps
    it when freed, so each step page-faults and zero-fills its activation memory again. With mmap and trimming off
    (mallopt(3)) freed blocks are reused: faster (BENCHMARKS.md, "Training speed settings") and the resident set
    stays at its peak. Affects the whole process, for allocations made afterwards.

    Returns False where the C library has no mallopt (macOS, musl): nothing changes there.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "mallopt"):
        return False
    # mallopt returns 1 on success; -1 disables trimming, 0 disables mmap for large blocks
    return libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, -1) == 1
