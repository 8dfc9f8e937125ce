"""How much freed memory the service's process keeps: glibc's malloc arenas.

glibc gives threads their own malloc arenas, up to 8 per core by default, and an arena keeps
most of what is freed into it for reuse instead of giving it back to the system. The service's
worker, PNG-reader and encoder threads each allocate and free frame-sized buffers all episode
long, so each arena they touch settles at its own high-water mark. Capping the arenas shares
those buffers between threads: a two-camera 640x480 drain peaked at a median 310 MB with 2
arenas and 317 MB with 1, against 405 MB with glibc's limit, at 0.99x its CPU per recorded
second (``benchmarks/bench_memory.py``, three interleaved rounds; benchmarks/README.md).

``ROBOVID_MALLOC_ARENAS`` sets the cap (0 leaves glibc's own). The cap is set at start, before
any worker thread exists; a C library other than glibc is left alone.
"""

from __future__ import annotations

import ctypes
import platform

M_ARENA_MAX = -8
"""mallopt's parameter number for the arena cap (glibc's malloc.h)."""


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for threads started from now on; True if the cap was set.

    False, and nothing changed, when ``arenas`` is 0 or the process does not run on glibc.
    """
    if arenas <= 0 or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
