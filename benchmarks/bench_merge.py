"""`robovid merge` of K robots x N episodes against copying the same bytes and against re-encoding them.

K robot roots (2 cameras, N episodes of F frames each, 640x480 natural frames with the index strip,
encoded once by ``robovid process`` with the service's default h264 and cached under
``benchmarks/out/cache/``) are merged into a fresh DEST by ``robovid merge`` (stream copy: in-place
appends, LeRobot metadata written). Baselines, each in its own fresh process, on the same sources,
interleaved round by round:

- ``copy``: ``shutil.copyfile`` of every source chunk file into a fresh folder, each fsynced: the
  bytes alone, no parsing, no metadata (a lower bound for any merge that keeps the video);
- ``re-encode``: what a merge that decodes and encodes again costs: every frame of every source
  chunk file decoded (PyAV) and encoded into one file per camera with robovid's h264 settings
  (libx264 veryfast crf 22, g=2, no B-frames), fsynced;
- ``merge again``: ``robovid merge`` rerun on the merged DEST (nothing to append): its fixed cost
  (interpreter, imports, reading the tables, rewriting nothing).

Measured per run: wall and CPU seconds of the whole process (``wait4``), peak RSS, bytes written;
``os.getloadavg()`` before each run.

    .venv/bin/python -m benchmarks.bench_merge            # K=3 robots x N=8 episodes x 90 frames, 3 rounds
    .venv/bin/python -m benchmarks.bench_merge --quick    # K=2 x 3 x 30 frames, 1 round
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "bench_merge"
CAMERAS = ("front", "wrist")
H264 = {"preset": "veryfast", "crf": "22", "g": "2", "bf": "0"}


def robot_roots(robots: int, episodes: int, frames: int, width: int, height: int) -> list[Path]:
    """The K source roots, made once (PNGs written, ``robovid process``: the PNGs are gone after)."""
    from robovid.metadata import read_segments
    from robovid.synthetic import write_recording

    base = c.CACHE_DIR / f"merge-{episodes}x{frames}-{width}x{height}"
    roots = []
    for robot in range(robots):
        root = base / f"robot-{robot}"
        if len(read_segments(root)) != episodes * len(CAMERAS):
            shutil.rmtree(root, ignore_errors=True)
            write_recording(root, CAMERAS, range(episodes), frames, width, height, seed=robot)
            env = {**os.environ, "ROBOVID_LOG_FORMAT": "json", "ROBOVID_MIN_FREE_MB": "0", "ROBOVID_VCODEC": "h264"}
            command = [sys.executable, "-m", "robovid_watch.cli", "process", str(root), "--no-progress"]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"robovid process {root} failed: {done.stderr[-3000:]}")
        roots.append(root)
    return roots


def chunk_files(roots: list[Path]) -> list[Path]:
    return [p for root in roots for p in sorted(root.glob("videos/*/chunk-*/file-*.mp4"))]


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------ workers (each in a fresh process)


def worker_copy(dest: Path, roots: list[Path]) -> None:
    from robovid.durable import fsync_dir, fsync_file

    for robot, root in enumerate(roots):
        for path in sorted(root.glob("videos/*/chunk-*/file-*.mp4")):
            target = dest / f"robot-{robot}" / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            fsync_file(target)
            fsync_dir(target.parent)
    c.worker_report(mode="copy")


def worker_reencode(dest: Path, roots: list[Path]) -> None:
    import av

    from robovid.durable import fsync_file

    frames = 0
    for camera in CAMERAS:
        target = dest / f"{camera}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(target), "w") as out:
            stream, written = None, 0
            for root in roots:
                for path in sorted(root.glob(f"videos/{camera}/chunk-*/file-*.mp4")):
                    with av.open(str(path)) as source:
                        video = source.streams.video[0]
                        if stream is None:
                            stream = out.add_stream("libx264", rate=video.average_rate, options=dict(H264))
                            stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
                        for frame in source.decode(video):
                            frame.pts, frame.time_base = written, 1 / Fraction(video.average_rate)
                            out.mux(stream.encode(frame))
                            written, frames = written + 1, frames + 1
            if stream is not None:
                out.mux(stream.encode(None))
        fsync_file(target)
    c.worker_report(mode="reencode", frames=frames)


# ------------------------------------------------------------------ runs


def run(mode: str, dest: Path, roots: list[Path]) -> dict[str, Any]:
    load = os.getloadavg()
    if mode in ("merge", "merge again"):
        argv = [sys.executable, "-m", "robovid_watch.cli", "merge", str(dest), *map(str, roots), "--no-progress"]
    else:
        argv = [sys.executable, "-m", "benchmarks.bench_merge", "--worker", mode, str(dest), *map(str, roots)]
    measured = c.run_measured(argv)
    if measured.returncode != 0:
        raise RuntimeError(f"{mode} failed ({measured.returncode}): {measured.stderr[-3000:]}")
    return {
        "mode": mode,
        "wall_s": measured.wall_s,
        "cpu_s": measured.cpu_s,
        "peak_rss_mb": measured.peak_rss_mb,
        "bytes": tree_bytes(dest),
        "load_before": list(load),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--robots", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.worker:
        mode, dest, *roots = a.worker
        (worker_copy if mode == "copy" else worker_reencode)(Path(dest), [Path(r) for r in roots])
        return 0
    robots = a.robots or (2 if a.quick else 3)
    episodes = a.episodes or (3 if a.quick else 8)
    frames = a.frames or (30 if a.quick else 90)
    rounds = a.rounds or (1 if a.quick else 3)
    width, height = (int(v) for v in a.size.split("x"))
    info = c.machine_info()
    c.print_header(f"robovid merge: {robots} robots x {episodes} episodes x 2 cameras x {frames} frames", info)
    roots = robot_roots(robots, episodes, frames, width, height)
    source_bytes = sum(p.stat().st_size for p in chunk_files(roots))
    results: dict[str, list[dict[str, Any]]] = {"merge": [], "merge again": [], "copy": [], "reencode": []}
    work = Path(tempfile.mkdtemp(prefix="rv-bench-merge-", dir="/tmp"))
    try:
        for round_index in range(rounds):
            order = ["merge", "copy", "reencode"] if round_index % 2 == 0 else ["reencode", "copy", "merge"]
            for mode in order:
                dest = work / f"{mode}-{round_index}"
                results[mode].append(run(mode, dest, roots))
                if mode == "merge":
                    results["merge again"].append(run("merge again", dest, roots))
                shutil.rmtree(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {
        mode: {k: c.median([r[k] for r in runs]) for k in ("wall_s", "cpu_s", "peak_rss_mb", "bytes")}
        for mode, runs in results.items()
    }
    print(f"\nsources: {len(chunk_files(roots))} chunk files, {source_bytes / 1e6:.1f} MB, "
          f"{robots * episodes * 2 * frames} frames; {rounds} round(s), medians\n")  # fmt: skip
    rows = [
        [mode, f"{m['wall_s']:.2f}", f"{m['cpu_s']:.2f}", f"{m['peak_rss_mb']:.0f}", f"{m['bytes'] / 1e6:.1f}"]
        for mode, m in med.items()
    ]
    print(c.table(["run", "wall s", "CPU s", "peak RSS MB", "MB written"], rows))
    work_cpu = med["merge"]["cpu_s"] - med["merge again"]["cpu_s"]
    ratios = {
        "merge / copy, CPU": med["merge"]["cpu_s"] / med["copy"]["cpu_s"],
        "merge / copy, wall": med["merge"]["wall_s"] / med["copy"]["wall_s"],
        "re-encode / merge, CPU": med["reencode"]["cpu_s"] / med["merge"]["cpu_s"],
        "re-encode / merge, wall": med["reencode"]["wall_s"] / med["merge"]["wall_s"],
        "merge minus its fixed cost (merge again), CPU s": work_cpu,
    }
    c.print_ratios(ratios)
    loads = [r["load_before"][0] for runs in results.values() for r in runs]
    print(f"\nload (1 min) before each run: {min(loads):.1f}-{max(loads):.1f}")
    payload = {"info": info, "params": vars(a) | {"robots": robots, "episodes": episodes, "frames": frames}}
    payload |= {"source_bytes": source_bytes, "results": results, "medians": med, "ratios": ratios}
    payload["load_avg_end"] = list(os.getloadavg())
    print(f"\nwrote {c.write_json(NAME, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
