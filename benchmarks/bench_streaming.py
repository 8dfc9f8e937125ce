"""CPU per frame of streaming a recording (issue #10 part 5) against writing PNGs for robovid-watch.

The same frames (640x480 natural content, robovid.synthetic, 30 fps, rendered before timing) go
to robovid by two routes, each ending committed in a chunk file by the real service
(``robovid process ROOT``, the service's own pipeline run once):

- **stream**: a recorder process feeds them to ``StreamingVideoEncoder(handoff=True)`` at the
  service's settings (h264 veryfast crf 22), paced at 30 fps as a camera would; the service then
  joins the segments, verifies every frame against its fingerprint, appends and commits;
- **stream-nosync**: the same with ``power_safe=False``: the crash log is never fsynced (it survives
  a crash of the recorder, not a power cut). ``stream`` over ``stream-nosync`` is the price of the
  power-loss contract (robovid/stream_log.py): CPU, the wall time ``feed_frame`` takes on the
  recorder's thread (mean and worst), and how many frames ``durable_frames`` trails the frames fed;
- **png**: a recorder process writes them as PNGs (Pillow, ``compress_level=1``, as LeRobot's
  image writer does), paced the same; the service then decodes, encodes, verifies, appends, commits.

Each process is measured whole (CPU of all its threads, ``_common.run_measured``); the recorder's
share is also taken around its feeding/writing loop alone (frame rendering and imports excluded).
The service's fixed cost (start, metadata, lock) is measured on an empty root in the same run and
subtracted. Variants interleave (stream, png, stream, png, ...).

    .venv/bin/python -m benchmarks.bench_streaming [--episodes 3] [--frames 150] [--repeats 2] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "bench_streaming"
ROUTES = ("stream", "stream-nosync", "png")
STREAMS = ("stream", "stream-nosync")


def _frames(episode: int, count: int, width: int, height: int) -> list[Any]:
    from robovid.synthetic import render_frame, scene

    background = scene(width, height, episode)
    return [render_frame(background, width, height, episode, i) for i in range(count)]


def worker(route: str, root: Path, episodes: int, frames: int, width: int, height: int) -> None:
    """One recorder: ``episodes`` episodes of one camera by ``route``, paced at 30 fps; reports its loop's CPU."""
    import io

    from PIL import Image

    from robovid import RGBEncoderConfig, StreamingVideoEncoder
    from robovid.layout import episode_dir, frame_path

    encoder = StreamingVideoEncoder(
        fps=c.FPS,
        rgb_encoder=RGBEncoderConfig(vcodec="h264", crf=22, preset="veryfast"),
        handoff=True,
        power_safe=route == "stream",
    )
    cpu = feed_s = worst_feed_s = 0.0
    spilled = 0
    lags: list[int] = []
    for episode in range(episodes):
        images = _frames(episode, frames, width, height)
        started_cpu, started = time.process_time(), time.monotonic()
        if route in STREAMS:
            encoder.start_episode(["cam"], root, episode_index=episode)
        folder = episode_dir(root, "cam", episode)
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            if route in STREAMS:
                fed = time.perf_counter()
                encoder.feed_frame("cam", image)
                took = time.perf_counter() - fed
                feed_s, worst_feed_s = feed_s + took, max(worst_feed_s, took)
                lags.append(i + 1 - encoder.durable_frames["cam"])
            else:
                out = io.BytesIO()
                Image.fromarray(image).save(out, format="PNG", compress_level=1)
                frame_path(folder, i).write_bytes(out.getvalue())
            time.sleep(max(0.0, started + (i + 1) / c.FPS - time.monotonic()))
        if route in STREAMS:
            spilled += encoder.spilled_frames.get("cam", 0)
            encoder.finish_episode()
        else:
            (folder / ".complete").touch()
        cpu += time.process_time() - started_cpu
    lags.sort()
    c.worker_report(
        route=route,
        loop_cpu_s=cpu,
        spilled=spilled,
        feed_s=feed_s,
        worst_feed_s=worst_feed_s,
        lag_median=lags[len(lags) // 2] if lags else 0,
        lag_max=lags[-1] if lags else 0,
    )


def service(root: Path) -> c.Measured:
    measured = c.run_measured(
        [sys.executable, "-m", "robovid_watch.cli", "process", str(root), "--no-progress", "--workers", "1"]
    )
    if measured.returncode != 0:
        raise RuntimeError(f"robovid process failed: {measured.stderr[-2000:]}")
    return measured


def one_run(route: str, episodes: int, frames: int, width: int, height: int) -> dict[str, Any]:
    from robovid.metadata import read_segments

    root = Path(tempfile.mkdtemp(prefix=f"bench-streaming-{route}-"))
    try:
        load = c.load_avg()
        recorder = c.run_worker(
            "benchmarks.bench_streaming", [route, str(root), str(episodes), str(frames), str(width), str(height)]
        )
        processed = service(root)
        rows = read_segments(root).to_pylist()
        committed = sum(r["num_frames"] for r in rows)
        if committed != episodes * frames:
            raise RuntimeError(f"{route}: {committed} frames committed, {episodes * frames} recorded")
        return {
            "route": route,
            "load_avg": load,
            "recorder_loop_cpu_s": recorder["loop_cpu_s"],
            "recorder_process_cpu_s": recorder["process"]["cpu_s"],
            "service_cpu_s": processed.cpu_s,
            "service_peak_rss_mb": processed.peak_rss_mb,
            "spilled": recorder["spilled"],
            "feed_s": recorder["feed_s"],
            "worst_feed_s": recorder["worst_feed_s"],
            "durable_lag_frames_median": recorder["lag_median"],
            "durable_lag_frames_max": recorder["lag_max"],
            "video_bytes": sum(r["video_bytes"] for r in rows),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=6, metavar=("ROUTE", "ROOT", "EPISODES", "FRAMES", "W", "H"))
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 episode of 60 frames, 1 repeat")
    args = parser.parse_args()
    if args.worker:
        route, root, episodes, frames, width, height = args.worker
        worker(route, Path(root), int(episodes), int(frames), int(width), int(height))
        return
    if args.quick:
        args.episodes, args.frames, args.repeats = 1, 60, 1
    info = c.machine_info()
    c.print_header("Streaming encoder against PNGs + robovid-watch: CPU per frame", info)
    empty = Path(tempfile.mkdtemp(prefix="bench-streaming-empty-"))
    fixed = [service(empty).cpu_s for _ in range(2)]
    shutil.rmtree(empty, ignore_errors=True)
    fixed_s = c.median(fixed)
    runs = [
        one_run(route, args.episodes, args.frames, c.WIDTH, c.HEIGHT) for _ in range(args.repeats) for route in ROUTES
    ]
    total = args.episodes * args.frames
    rows, per_frame, recorder_ms, feed_ms = [], {}, {}, {}
    for route in ROUTES:
        mine = [r for r in runs if r["route"] == route]
        recorder = c.median([r["recorder_loop_cpu_s"] for r in mine]) * 1000 / total
        served = c.median([r["service_cpu_s"] - fixed_s for r in mine]) * 1000 / total
        per_frame[route], recorder_ms[route] = recorder + served, recorder
        feed = [r for r in mine if "feed_s" in r]
        feed_ms[route] = c.median([r["feed_s"] for r in feed]) * 1000 / total if feed else float("nan")
        rows.append(
            [
                route,
                recorder,
                served,
                recorder + served,
                feed_ms[route],
                max((r["worst_feed_s"] * 1000 for r in feed), default=float("nan")),
                "/".join(str(r["durable_lag_frames_median"]) for r in feed) or "-",
                "/".join(str(r["durable_lag_frames_max"]) for r in feed) or "-",
                sum(r["spilled"] for r in mine),
                c.median([r["video_bytes"] for r in mine]) / total / 1000,
                [r["load_avg"][0] for r in mine],
            ]
        )
    headers = ["route", "recorder ms/frame", "service ms/frame", "total ms/frame", "feed wall ms/frame"]
    headers += ["worst feed ms", "durable lag median", "durable lag max", "spilled", "kB/frame", "load"]
    print(c.table(headers, rows))
    ratios = {
        "stream_over_png_total": per_frame["stream"] / per_frame["png"],
        "power_safe_recorder_cpu": recorder_ms["stream"] / recorder_ms["stream-nosync"],
        "power_safe_feed_wall": feed_ms["stream"] / feed_ms["stream-nosync"],
    }
    c.print_ratios(ratios)
    print(
        f"service fixed cost (empty root, subtracted): {fixed_s:.2f} CPU s; {total} frames a run; load end {c.load_avg()}"
    )
    c.write_json(
        NAME,
        {
            "info": info,
            "runs": runs,
            "service_fixed_cpu_s": fixed,
            "per_frame_ms": per_frame,
            "ratios": ratios,
            "load_avg_end": c.load_avg(),
        },
    )


if __name__ == "__main__":
    main()
