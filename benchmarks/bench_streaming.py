"""CPU per frame of streaming a recording (issue #10 part 5) against writing PNGs for robovid-watch; no frame lost.

The same frames (natural content, robovid.synthetic, 30 fps, rendered before timing) go to robovid
by two routes, each ending committed in a chunk file by the real service (``robovid process ROOT``,
the service's own pipeline run once):

- **stream**: a recorder process feeds them to ``StreamingVideoEncoder(handoff=True)`` at the
  service's settings (h264 veryfast crf 22), paced at 30 fps as a camera would; the service then
  joins the segments, verifies every frame against its fingerprint, appends and commits;
- **stream-nosync**: the same with ``power_safe=False``: the crash log is never fsynced (it survives
  a crash of the recorder, not a power cut). ``stream`` over ``stream-nosync`` is the price of the
  power-loss contract (robovid/stream_log.py): CPU, the wall time ``feed_frame`` takes on the
  recorder's thread (mean and worst), and how many frames ``durable_frames`` trails the frames fed;
- **png**: a recorder process writes them as PNGs (Pillow, ``compress_level=1``, as LeRobot's
  image writer does), paced the same; the service then decodes, encodes, verifies, appends, commits.

Those three at 640x480. The **overloaded** case runs the stream and PNG routes again at 1920x1080
(``--overload-size``): the same settings, the same 30 fps pace, but a camera whose frames the
encoder thread cannot encode in real time on these 2 cores (no test hook holds it: it is just too
slow), so its queue fills and the rest of each episode spills to PNGs that the service encodes.
The PNG route at that size is its like-for-like baseline.

Every route's committed frames are decoded and each is compared with the frame fed
(``benchmarks/_committed_frames.py``: burnt-in index and PSNR), so "committed" means committed with
its own content. Each process is measured whole (CPU of all its threads, ``_common.run_measured``);
the recorder's share is also taken around its feeding/writing loop alone (frame rendering and
imports excluded; the spill thread and ``finish_episode`` included). The service's fixed cost
(start, metadata, lock) is measured on an empty root in the same run and subtracted. Routes
interleave (stream, stream-nosync, png, stream-overload, png-overload, stream, ...).

    .venv/bin/python -m benchmarks.bench_streaming [--episodes 3] [--frames 150] [--repeats 2]
        [--overload-episodes 2] [--overload-size 1920x1080] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import _common as c
from benchmarks._committed_frames import MIN_PSNR_DB, check_root, synthetic_frames

NAME = "bench_streaming"
KINDS = ("stream", "stream-nosync", "png")
STREAMS = ("stream", "stream-nosync")


@dataclass(frozen=True)
class Route:
    """One row: a recorder ``kind`` at a frame size, and the PNG route it is compared with."""

    name: str
    kind: str
    width: int
    height: int
    episodes: int
    baseline: str


def _frames(episode: int, count: int, width: int, height: int) -> list[Any]:
    from robovid.synthetic import render_frame, scene

    background = scene(width, height, episode)
    return [render_frame(background, width, height, episode, i) for i in range(count)]


def worker(kind: str, root: Path, episodes: int, frames: int, width: int, height: int) -> None:
    """One recorder: ``episodes`` episodes of one camera by ``kind``, paced at 30 fps; reports its loop's CPU."""
    import io

    from PIL import Image

    from robovid import RGBEncoderConfig, StreamingVideoEncoder
    from robovid.layout import episode_dir, frame_path

    encoder = StreamingVideoEncoder(
        fps=c.FPS,
        rgb_encoder=RGBEncoderConfig(vcodec="h264", crf=22, preset="veryfast"),
        handoff=True,
        power_safe=kind == "stream",
    )
    cpu = wall = paced_s = feed_s = worst_feed_s = 0.0
    fed, spilled = 0, []
    lags: list[int] = []
    for episode in range(episodes):
        images = _frames(episode, frames, width, height)
        started_cpu, started = time.process_time(), time.monotonic()
        if kind in STREAMS:
            encoder.start_episode(["cam"], root, episode_index=episode)
        folder = episode_dir(root, "cam", episode)
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            if kind in STREAMS:
                before = time.perf_counter()
                encoder.feed_frame("cam", image)
                took = time.perf_counter() - before
                feed_s, worst_feed_s = feed_s + took, max(worst_feed_s, took)
                lags.append(i + 1 - encoder.durable_frames["cam"])
            else:
                out = io.BytesIO()
                Image.fromarray(image).save(out, format="PNG", compress_level=1)
                frame_path(folder, i).write_bytes(out.getvalue())
            fed += 1
            time.sleep(max(0.0, started + (i + 1) / c.FPS - time.monotonic()))
        paced_s += time.monotonic() - started
        if kind in STREAMS:
            spilled.append(encoder.spilled_frames.get("cam", 0))
            encoder.finish_episode()
        else:
            (folder / ".complete").touch()
        cpu += time.process_time() - started_cpu
        wall += time.monotonic() - started
    lags.sort()
    c.worker_report(
        kind=kind,
        fed=fed,
        loop_cpu_s=cpu,
        loop_wall_s=wall,
        feeding_wall_s=paced_s,
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


def one_run(route: Route, frames: int) -> dict[str, Any]:
    from robovid.metadata import read_segments

    root = Path(tempfile.mkdtemp(prefix=f"bench-streaming-{route.name}-"))
    try:
        load = c.load_avg()
        size = [str(route.episodes), str(frames), str(route.width), str(route.height)]
        recorder = c.run_worker("benchmarks.bench_streaming", [route.kind, str(root), *size])
        processed = service(root)
        check = check_root(root, synthetic_frames(route.width, route.height))
        rows = read_segments(root).to_pylist()
        return {
            "route": route.name,
            "load_avg": load,
            "fed": recorder["fed"],
            "spilled": sum(recorder["spilled"]),
            "spilled_per_episode": recorder["spilled"],
            "committed": check.committed,
            "checked": check.checked,
            "wrong": len(check.wrong),
            "wrong_frames": check.wrong[:20],
            "extra": check.extra,
            "min_psnr_db": check.min_psnr_db,
            "recorder_loop_cpu_s": recorder["loop_cpu_s"],
            "recorder_loop_wall_s": recorder["loop_wall_s"],
            "recorder_feeding_wall_s": recorder["feeding_wall_s"],
            "recorder_process_cpu_s": recorder["process"]["cpu_s"],
            "recorder_peak_rss_mb": recorder["process"]["peak_rss_mb"],
            "service_cpu_s": processed.cpu_s,
            "service_wall_s": processed.wall_s,
            "service_peak_rss_mb": processed.peak_rss_mb,
            "feed_s": recorder["feed_s"],
            "worst_feed_s": recorder["worst_feed_s"],
            "durable_lag_frames_median": recorder["lag_median"],
            "durable_lag_frames_max": recorder["lag_max"],
            "video_bytes": sum(r["video_bytes"] for r in rows),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def routes(args: argparse.Namespace) -> list[Route]:
    width, height = (int(x) for x in args.overload_size.split("x"))
    base = [Route(kind, kind, c.WIDTH, c.HEIGHT, args.episodes, "png") for kind in KINDS]
    overload = [
        Route("stream-overload", "stream", width, height, args.overload_episodes, "png-overload"),
        Route("png-overload", "png", width, height, args.overload_episodes, "png-overload"),
    ]
    return base + (overload if args.overload_episodes else [])


def summarize(route: Route, mine: list[dict[str, Any]], frames: int, fixed_s: float) -> dict[str, Any]:
    """One route's medians (CPU per frame) and sums over its repeats (frames)."""
    total = route.episodes * frames
    recorder = c.median([r["recorder_loop_cpu_s"] for r in mine]) * 1000 / total
    served = c.median([r["service_cpu_s"] - fixed_s for r in mine]) * 1000 / total
    streamed = route.kind in STREAMS
    return {
        "route": route,
        "fed": sum(r["fed"] for r in mine),
        "spilled": sum(r["spilled"] for r in mine),
        "committed": sum(r["committed"] for r in mine),
        "lost": sum(r["fed"] - r["checked"] for r in mine),
        "wrong": sum(r["wrong"] for r in mine) + sum(r["extra"] for r in mine),
        "min_psnr_db": min(r["min_psnr_db"] for r in mine),
        "recorder_ms": recorder,
        "service_ms": served,
        "total_ms": recorder + served,
        "pace": c.median([r["recorder_feeding_wall_s"] for r in mine]) / (total / c.FPS),
        "realtime": c.median([r["recorder_loop_wall_s"] for r in mine]) / (total / c.FPS),
        "feed_ms": c.median([r["feed_s"] for r in mine]) * 1000 / total if streamed else float("nan"),
        "worst_feed_ms": max(r["worst_feed_s"] for r in mine) * 1000 if streamed else float("nan"),
        "lag": "/".join(f"{r['durable_lag_frames_median']}/{r['durable_lag_frames_max']}" for r in mine)
        if streamed
        else "-",
        "kb_per_frame": c.median([r["video_bytes"] for r in mine]) / total / 1000,
        "load": [r["load_avg"][0] for r in mine],
    }


def print_tables(summaries: dict[str, dict[str, Any]]) -> dict[str, float]:
    frames_rows, cpu_rows, ratios = [], [], {}
    for name, s in summaries.items():
        route, base = s["route"], summaries[s["route"].baseline]
        size = f"{route.width}x{route.height}"
        frames_rows.append(
            [name, size, s["fed"], s["spilled"], s["committed"], s["lost"], s["wrong"], s["min_psnr_db"]]
        )
        ratio = s["total_ms"] / base["total_ms"]
        if name != route.baseline:
            for part in ("recorder", "service", "total"):
                ratios[f"{name}_over_{route.baseline}_{part}"] = s[f"{part}_ms"] / base[f"{part}_ms"]
        cpu = [s[k] for k in ("recorder_ms", "service_ms", "total_ms")]
        stream = [s[k] for k in ("pace", "realtime", "feed_ms", "worst_feed_ms", "lag", "kb_per_frame", "load")]
        cpu_rows.append([name, size, *cpu, ratio, *stream])
    headers = ["route", "size", "frames fed", "spilled as PNGs", "committed", "lost", "wrong content", "min PSNR dB"]
    print(c.table(headers, frames_rows))
    headers = ["route", "size", "recorder ms/frame", "service ms/frame", "total ms/frame", "total / PNG route"]
    headers += ["feeding wall / real time", "with finish", "feed wall ms/frame", "worst feed ms", "durable lag med/max"]
    headers += ["kB/frame", "load"]
    print(c.table(headers, cpu_rows))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=6, metavar=("KIND", "ROOT", "EPISODES", "FRAMES", "W", "H"))
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--overload-episodes", type=int, default=2, help="episodes of the overloaded routes (0: none)")
    parser.add_argument("--overload-size", default="1920x1080", help="frame size the encoder cannot keep up with")
    parser.add_argument("--quick", action="store_true", help="1 episode of 60 frames, 1 repeat")
    args = parser.parse_args()
    if args.worker:
        kind, root, episodes, frames, width, height = args.worker
        worker(kind, Path(root), int(episodes), int(frames), int(width), int(height))
        return
    if args.quick:
        args.episodes, args.frames, args.repeats, args.overload_episodes = 1, 60, 1, min(args.overload_episodes, 1)
    info = c.machine_info()
    c.print_header("Streaming encoder against PNGs + robovid-watch: CPU per frame, frames kept", info)
    empty = Path(tempfile.mkdtemp(prefix="bench-streaming-empty-"))
    fixed = [service(empty).cpu_s for _ in range(2)]
    shutil.rmtree(empty, ignore_errors=True)
    fixed_s = c.median(fixed)
    plan = routes(args)
    runs = [one_run(route, args.frames) for _ in range(args.repeats) for route in plan]
    summaries = {
        route.name: summarize(route, [r for r in runs if r["route"] == route.name], args.frames, fixed_s)
        for route in plan
    }
    ratios = print_tables(summaries)
    ratios["power_safe_recorder_cpu"] = summaries["stream"]["recorder_ms"] / summaries["stream-nosync"]["recorder_ms"]
    ratios["power_safe_feed_wall"] = summaries["stream"]["feed_ms"] / summaries["stream-nosync"]["feed_ms"]
    c.print_ratios(ratios)
    print(
        f"service fixed cost (empty root, subtracted): {fixed_s:.2f} CPU s; {args.frames} frames an episode; "
        f"a frame is wrong below {MIN_PSNR_DB} dB or with another index; load end {c.load_avg()}"
    )
    c.write_json(
        NAME,
        {
            "info": info,
            "runs": runs,
            "service_fixed_cpu_s": fixed,
            "summaries": {k: {**v, "route": v["route"].__dict__} for k, v in summaries.items()},
            "ratios": ratios,
            "load_avg_end": c.load_avg(),
        },
    )
    defects = {k: (s["lost"], s["wrong"]) for k, s in summaries.items() if s["lost"] or s["wrong"]}
    if defects:
        sys.exit(f"DEFECT: frames lost or wrong (route: lost, wrong): {defects}")
    if args.overload_episodes and not summaries["stream-overload"]["spilled"]:
        print("NOTE: the overloaded route spilled no frame here: the encoder kept up; it shows no overload.")


if __name__ == "__main__":
    main()
