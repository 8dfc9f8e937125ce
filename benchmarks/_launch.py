"""Run one command and write its own rusage (wall, CPU, peak RSS) as JSON: ``_launch.py OUT.json ARGV...``.

Linux carries a process's peak RSS across fork and exec: a child forked from a benchmark
that holds hundreds of MB of frames reports at least that much as its ``ru_maxrss``.
This launcher is started with ``python -I -S`` (a few MB), so the command it starts
inherits only the launcher's own small peak, and ``ru_maxrss`` is the command's.
Standard library only, no site packages.
"""

import json
import os
import sys
import time

out, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    json.dump(
        {
            "returncode": os.waitstatus_to_exitcode(status),
            "wall_s": time.perf_counter() - started,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024,
        },
        f,
    )
