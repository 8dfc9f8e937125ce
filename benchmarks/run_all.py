"""Run every benchmark, one after the other, each in its own process (``make bench``).

Each writes its table to stdout and its JSON to ``benchmarks/out/<name>.json``; at the end
the targets of all of them are listed together. The exit status is non-zero only when a
benchmark fails to run: a missed target is a result, not an error.

    .venv/bin/python -m benchmarks.run_all            # ~15 min on 2 cores
    .venv/bin/python -m benchmarks.run_all --quick    # ~2 min, to check that everything runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from benchmarks import _common as c

BENCHMARKS = (
    "bench_encode",
    "bench_append",
    "bench_decode",
    "bench_presets",
    "bench_path",
    "bench_png",
    "bench_levers",
    "bench_verify",
    "bench_streaming",
    "bench_e2e",
    "bench_memory",
    "bench_remote",
    "bench_ray",
    "bench_merge",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    a = parser.parse_args(argv)
    failed = []
    for name in a.only:
        print(f"\n===== {name} =====", flush=True)
        started = time.perf_counter()
        argv_ = [sys.executable, "-m", f"benchmarks.{name}", *(["--quick"] if a.quick else [])]
        if subprocess.run(argv_, cwd=c.REPO).returncode != 0:
            failed.append(name)
        print(f"({name}: {time.perf_counter() - started:.0f} s)", flush=True)
    rows = []
    for name in a.only:
        path = c.OUT_DIR / f"{name}.json"
        if name in failed or not path.exists():
            continue
        for t in json.loads(path.read_text()).get("targets", []):
            rows.append([name, t["target"], t["value"], t["limit"], t["met"]])
    print("\n===== targets =====")
    print(c.table(["benchmark", "target", "value", "limit", "met"], rows))
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
