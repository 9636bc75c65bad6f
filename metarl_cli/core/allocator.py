"""Large tensors from memory the process keeps, not from fresh pages (``keep_freed_memory``).

glibc's malloc hands out blocks above its mmap threshold (at most 32 MiB when it adjusts the
threshold itself) as fresh mappings and unmaps them when they are freed, so each new block is
page-faulted in and zero-filled by the kernel on first write. A MAML iteration on the paper's
batches allocates hundreds of (tasks, steps, units) tensors of 64 MB (40 x 4,000 x 100
floats) in TRPO's products and its inner steps: on the development machine writing a fresh
one took 15 ms, writing a reused one 2 ms, and the whole iteration ran 1.2-1.3x faster with
the freed blocks kept (docs/PERFORMANCE.md). The price is resident memory: freed blocks stay with
the process for its next allocations instead of going back to the system.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap
TRIM_THRESHOLD = 1 << 30  # and up to 1 GiB of free heap stays with the process


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve blocks below 1 GiB from its heap and keep up to 1 GiB of freed
    heap, for the rest of the process. False, changing nothing, where the C library is not
    glibc (macOS, Windows, musl) or refuses the settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
