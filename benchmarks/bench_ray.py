"""`robovid process ROOT --ray` against `robovid process ROOT` on this machine, in one run.

The same backlog (``--episodes`` copies of 640x480 PNG episodes, one camera each) is drained
by ``robovid process`` with 2 worker threads (the baseline), and by ``robovid process --ray
ADDRESS`` joining a local Ray cluster of 2 CPUs (the cluster started beforehand, as a real
one would be; its start-up is timed on its own), alternately, ``--rounds`` times. Both encode
the same frames with the same settings into the same chunk layout.

Measured per run: wall seconds; CPU seconds of the driver process (``wait4``) and of the Ray
cluster's processes (raylet, GCS, workers: psutil, before and after); and, from the committed
segment rows, each episode's encode+verify seconds (on a worker) and append seconds (on the
driver). Each round also runs both variants on an empty root: their fixed cost (start-up, joining
the cluster), so the driver's *marginal* CPU per episode under ``--ray`` — (driver CPU - empty
run's) / episodes — is the serial part of the backfill: the bound on how far more workers can
take it (README, "Fleet").

    .venv/bin/python -m benchmarks.bench_ray                 # 8 episodes of 150 frames, 2 rounds
    .venv/bin/python -m benchmarks.bench_ray --quick         # 4 episodes of 60 frames, 1 round
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "bench_ray"


class _ClusterCPU:
    """CPU seconds our Ray cluster's processes (this process's descendants) spend while a run goes on.

    Ray starts a job's workers when its driver connects and ends them when it leaves, and nobody
    may reap them into a parent's ``children_*`` times: so every descendant's CPU is sampled
    every ``PERIOD_S`` and its last sample counted (a worker's last ``PERIOD_S`` may be missed).
    """

    PERIOD_S = 0.2

    def __init__(self) -> None:
        import psutil

        self._roots = psutil.Process().children()  # the cluster's own processes (the measured driver comes later)
        self._start = self._sample()
        self._last = dict(self._start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[int, float]:
        import psutil

        seen = {}
        tree = [p for root in self._roots if root.is_running() for p in [root, *root.children(recursive=True)]]
        for child in tree:
            try:
                times = child.cpu_times()
                seen[child.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return seen

    def _run(self) -> None:
        while not self._stop.wait(self.PERIOD_S):
            self._last.update(self._sample())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())
        return sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items())


def _fill(root: Path, sources: list[Path], episodes: int) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for index in range(episodes):
        target = root / "images" / "front" / f"episode-{index:06d}"
        shutil.copytree(sources[index % len(sources)], target)


def _rows(root: Path) -> list[dict[str, Any]]:
    from robovid.metadata import read_segments

    return list(read_segments(root).to_pylist())


def _run(root: Path, extra: list[str]) -> dict[str, Any]:
    cluster = _ClusterCPU()
    measured = c.run_measured(
        [sys.executable, "-m", "robovid_watch.cli", "process", str(root), "--no-progress", *extra]
    )
    if measured.returncode != 0:
        raise RuntimeError(f"robovid process {extra} failed: {measured.stderr[-3000:]}")
    rows = _rows(root)
    return {
        "wall_s": measured.wall_s,
        "driver_cpu_s": measured.cpu_s,
        "cluster_cpu_s": cluster.stop(),  # the idle cluster's own CPU in a run without --ray
        "episodes": len(rows),
        "encode_verify_s": [r["encode_s"] + r["verify_s"] for r in rows],
        "append_s": [r["append_s"] for r in rows],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    a = parser.parse_args(argv)
    episodes = a.episodes or (4 if a.quick else 8)
    frames = a.frames or (60 if a.quick else 150)
    rounds = a.rounds or (1 if a.quick else 2)
    info = c.machine_info()
    c.print_header("robovid process --ray vs robovid process (2 workers each)", info)
    sources = c.episode_dirs(3, num_frames=frames)
    os.environ.update(
        ROBOVID_LOG_FORMAT="json", ROBOVID_MIN_FREE_MB="0", SVT_LOG="1", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"
    )
    import ray

    temp_dir = tempfile.mkdtemp(prefix="rv-bench-ray-", dir="/tmp")
    started = time.perf_counter()
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    cluster_start_s = time.perf_counter() - started
    address = context.address_info["gcs_address"]
    results: dict[str, list[dict[str, Any]]] = {"plain": [], "ray": [], "plain-empty": [], "ray-empty": []}
    work = Path(tempfile.mkdtemp(prefix="rv-bench-ray-root-"))
    try:
        for round_index in range(rounds):
            order = ["plain", "ray"] if round_index % 2 == 0 else ["ray", "plain"]
            for variant in [*order, *(f"{v}-empty" for v in order)]:
                root = work / f"{variant}-{round_index}"
                _fill(root, sources, 0 if variant.endswith("-empty") else episodes)
                (root / "images").mkdir(parents=True, exist_ok=True)
                extra = ["--workers", "2"] + (["--ray", address] if variant.startswith("ray") else [])
                results[variant].append(_run(root, extra))
                shutil.rmtree(root, ignore_errors=True)
                print(f"round {round_index} {variant}: {results[variant][-1]['wall_s']:.1f} s", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)
    load_end = c.load_avg()
    fixed = {v: c.median([r["driver_cpu_s"] for r in results[f"{v}-empty"]]) for v in ("plain", "ray")}
    summary = {variant: _summary(results[variant], episodes) for variant in ("plain", "ray")}
    rows = [
        [
            variant,
            s["wall_s"],
            s["driver_cpu_s"],
            s["cluster_cpu_s"],
            s["cpu_s_per_episode"],
            s["encode_verify_s_per_episode"],
            s["append_s_per_episode"],
        ]
        for variant, s in summary.items()
    ]
    print()
    print(
        c.table(
            [
                "variant",
                "wall s",
                "driver CPU s",
                "Ray cluster CPU s",
                "CPU s / episode",
                "encode+verify s / ep",
                "append s / ep",
            ],
            rows,
        )
    )
    plain, with_ray = summary["plain"], summary["ray"]
    ratios = {
        "wall: --ray / plain": round(with_ray["wall_s"] / plain["wall_s"], 3),
        "total CPU: --ray / plain": round(
            (with_ray["driver_cpu_s"] + with_ray["cluster_cpu_s"]) / plain["driver_cpu_s"], 3
        ),
        "driver CPU of an empty run (s): plain / --ray": f"{fixed['plain']:.2f} / {fixed['ray']:.2f}",
        "driver marginal CPU per episode under --ray (s)": round(
            (with_ray["driver_cpu_s"] - fixed["ray"]) / episodes, 3
        ),
        "task CPU per episode under --ray (cluster CPU / episodes, s)": round(with_ray["cluster_cpu_s"] / episodes, 3),
        "driver marginal CPU / task CPU": round(
            (with_ray["driver_cpu_s"] - fixed["ray"]) / max(1e-9, with_ray["cluster_cpu_s"]), 3
        ),
        "wall, without the empty runs' wall: --ray / plain": round(
            (with_ray["wall_s"] - c.median([r["wall_s"] for r in results["ray-empty"]]))
            / (plain["wall_s"] - c.median([r["wall_s"] for r in results["plain-empty"]])),
            3,
        ),
        "cluster start-up (s, once)": round(cluster_start_s, 1),
    }
    c.print_ratios(ratios, f"{episodes} episodes x {frames} frames 640x480, median of {rounds} round(s)")
    print(f"\nload average at start {info['load_avg_start']}, at end {load_end}")
    c.write_json(
        NAME,
        {
            "machine": info,
            "load_avg_end": load_end,
            "episodes": episodes,
            "frames": frames,
            "rounds": rounds,
            "runs": results,
            "summary": summary,
            "empty_run_driver_cpu_s": fixed,
            "ratios": ratios,
        },
    )
    return 0


def _summary(runs: list[dict[str, Any]], episodes: int) -> dict[str, float]:
    def med(key: str) -> float:
        return c.median([r[key] for r in runs])

    encode_verify = [v for r in runs for v in r["encode_verify_s"]]
    append = [v for r in runs for v in r["append_s"]]
    return {
        "wall_s": med("wall_s"),
        "driver_cpu_s": med("driver_cpu_s"),
        "cluster_cpu_s": med("cluster_cpu_s"),
        "cpu_s_per_episode": (med("driver_cpu_s") + med("cluster_cpu_s")) / episodes,
        "encode_verify_s_per_episode": c.median(encode_verify),
        "append_s_per_episode": c.median(append),
    }


if __name__ == "__main__":
    sys.exit(main())
