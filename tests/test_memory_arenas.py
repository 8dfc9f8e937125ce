"""ROBOVID_MALLOC_ARENAS caps glibc's malloc arenas, which is what keeps the service's peak memory down.

Counted with glibc's own ``malloc_stats()`` (one "Arena N:" block per arena) in a real process
whose threads each allocate while all of them are alive; the memory it saves is measured in
benchmarks/bench_memory.py, not here.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import run_daemon

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")

THREADS = 8

PROGRAM = f"""
import ctypes, sys, threading
from robovid_watch.memory import limit_malloc_arenas
print(limit_malloc_arenas(int(sys.argv[1])), flush=True)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
all_in = threading.Barrier({THREADS})
def worker():
    block = libc.malloc(1 << 20)  # a thread's first malloc picks (or makes) its arena
    all_in.wait()  # every thread alive at once: none hands its arena on to the next
    libc.free(block)
threads = [threading.Thread(target=worker) for _ in range({THREADS})]
for t in threads: t.start()
for t in threads: t.join()
libc.malloc_stats()  # to stderr, one "Arena N:" block per arena
"""


def _arenas_after_threads(cap: int) -> tuple[str, int]:
    result = subprocess.run([sys.executable, "-c", PROGRAM, str(cap)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip(), len(re.findall(r"^Arena \d+:", result.stderr, re.MULTILINE))


@pytest.mark.parametrize("cap", [1, 2])
def test_the_threads_share_at_most_the_arenas_asked_for(cap: int) -> None:
    applied, arenas = _arenas_after_threads(cap)
    assert applied == "True"
    assert 1 <= arenas <= cap


def test_zero_leaves_glibcs_own_limit() -> None:
    applied, arenas = _arenas_after_threads(0)
    assert applied == "False"
    assert arenas > 2  # glibc's own: a new arena per thread, up to 8 per core


def test_a_bad_value_is_refused_at_start_naming_the_variable(tmp_path: Path) -> None:
    result = run_daemon(tmp_path, ROBOVID_MALLOC_ARENAS="-1")
    assert result.returncode == 78, result.stderr[-2000:]
    assert "ROBOVID_MALLOC_ARENAS" in result.stderr
