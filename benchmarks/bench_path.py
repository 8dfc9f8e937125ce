"""Profile of one frame's whole path through the service at the faithful default (issue 8, part 4).

Each stage of the path is timed alone, over every frame of one natural-content episode
(``robovid.synthetic``, PNG ``compress_level=1``), in a fresh process per resolution, as
CPU milliseconds per frame (``CLOCK_PROCESS_CPUTIME_ID``: the encoder's and decoder's own
threads included):

- **PNG read**: the file's bytes (page cache warm), robovid's chunk walk (every CRC), the
  pyspng decode, ``VideoFrame.from_ndarray`` and the RGB -> yuv420p ``reformat``;
- **encode**: libsvtav1 at the default settings on frames already converted, and the
  **mux** alone (the same packets re-muxed into an in-memory MP4);
- **verify**: every frame decoded by PyAV (dav1d), turned into RGB, and fingerprinted
  (per-tile means of 16x16 tiles), and the source side's fingerprint of the same frames.

For each per-frame stage, a **GIL probe**: while the stage runs, a second Python thread
sleeps 0.2 ms in a loop; it can only wake up when it gets the GIL, so its p90 wake-up
latency is ~0.3 ms when the stage releases the GIL and about the stage's call length when
the stage holds it. Then the library's real pipeline (``encode_frames_into``: reader thread
+ encoder) is timed whole, with the reader thread's own CPU, and the service's current
``verify_video``, so the sum of the stages can be checked against it.

    .venv/bin/python -m benchmarks.bench_path            # 640x480 x 300 frames, 1280x720 x 150
    .venv/bin/python -m benchmarks.bench_path --quick    # 60 frames each
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "bench_path"
MODULE = "benchmarks.bench_path"
PRESET = 10
TILE_PX = 8
SIZES = {"640x480": (640, 480, 300), "1280x720": (1280, 720, 150)}
PROBE_SLEEP_S = 0.0002
GIL_HELD_ABOVE_MS = 1.0


# ---------------------------------------------------------------- measuring helpers


def cpu_ms_per_item(fn: Callable[[Any], Any], items: Sequence[Any], repeats: int = 2) -> float:
    """Best-of-``repeats`` process CPU ms per item of ``fn(item)`` over ``items``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for item in items:
            fn(item)
        best = min(best, (time.process_time() - start) / len(items))
    return best * 1e3


def gil_probe_ms(fn: Callable[[Any], Any], items: Sequence[Any]) -> float:
    """p90 wake-up latency (ms) of a thread sleeping 0.2 ms in a loop while ``fn`` runs over ``items``."""
    latencies: list[float] = []
    done = threading.Event()

    def sleeper() -> None:
        while not done.is_set():
            start = time.perf_counter()
            time.sleep(PROBE_SLEEP_S)
            latencies.append(time.perf_counter() - start)

    thread = threading.Thread(target=sleeper)
    thread.start()
    try:
        for item in items:
            fn(item)
    finally:
        done.set()
        thread.join()
    return c.percentile(latencies, 90) * 1e3


def fingerprint_functions() -> tuple[str, Callable[[Any], Any], Callable[[int, Any, Any, Any], Any]]:
    """robovid's own fingerprint and compare when it has them, else an estimate of their cost."""
    try:
        from robovid.fingerprint import compare, fingerprint  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return f"estimate: {TILE_PX}px tile sums of Y, U, V", _estimate_fingerprint, _estimate_compare
    return "robovid.fingerprint", fingerprint, compare


def _estimate_fingerprint(frame: Any) -> list[Any]:
    """Per-tile sums of every plane of a yuv frame, rows summed as uint16 first (no float pass)."""
    import numpy as np

    sums = []
    for plane in frame.planes:
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        h, w = plane.height // TILE_PX * TILE_PX, plane.width // TILE_PX * TILE_PX
        by_rows = rows[:h, :w].reshape(h // TILE_PX, TILE_PX, w).sum(axis=1, dtype=np.uint16)
        sums.append(by_rows.reshape(h // TILE_PX, w // TILE_PX, TILE_PX).sum(axis=2, dtype=np.uint16))
    return sums


def _estimate_compare(_index: int, decoded: Any, own: Any, previous: Any) -> bool:
    import numpy as np

    bad = False
    for d, s, p in zip(decoded, own, previous or own, strict=True):
        own_error = np.abs(d.astype(np.int32) - s)
        bad |= bool(((np.abs(d.astype(np.int32) - p) < own_error) & (own_error > 16 * TILE_PX * TILE_PX)).any())
    return bad


# ---------------------------------------------------------------- worker: one resolution, one process


def _settings() -> Any:
    from robovid.settings import EncoderSettings

    return EncoderSettings(preset=PRESET)


def _encode_to_memory(frames: Sequence[Any], settings: Any, size: tuple[int, int]) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(settings.encoder_name, rate=c.FPS, options=settings.codec_options())
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _remux(video: bytes) -> None:
    import av

    with av.open(io.BytesIO(video)) as source, av.open(io.BytesIO(), "w", format="mp4") as out:
        stream = out.add_stream_from_template(source.streams.video[0], opaque=True)
        for packet in source.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def _demux(video: bytes) -> None:
    import av

    with av.open(io.BytesIO(video)) as source:
        for _packet in source.demux(video=0):
            pass


def _decode_all(video: bytes, threads: int) -> list[Any]:
    """Every frame, decoded by PyAV (dav1d) with ``threads`` (0 = FFmpeg's automatic frame+slice threads)."""
    import av

    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        if threads:
            stream.thread_count = threads
        else:
            stream.thread_type = "AUTO"
        return list(container.decode(stream))


def _per_frame_stages(paths: list[Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Time the per-frame stages, before issue 8 and now; return the rows and what later stages need."""
    import av
    import imagecodecs
    import numpy as np
    import pyspng
    from av.video.reformatter import VideoReformatter

    from robovid.frames import _check_png

    blobs = [p.read_bytes() for p in paths]
    rgb = [np.asarray(pyspng.load(b, "RGB")) for b in blobs]
    as_frames = [av.VideoFrame.from_ndarray(x, format="rgb24") for x in rgb]
    yuv = [f.reformat(format="yuv420p") for f in as_frames]
    height, width = rgb[0].shape[:2]
    reused = av.VideoFrame(width, height, "rgb24")
    view = np.frombuffer(memoryview(reused.planes[0]), np.uint8, count=rgb[0].size).reshape(rgb[0].shape)
    reformatter = VideoReformatter()
    label, fingerprint, _compare = fingerprint_functions()
    stages: list[tuple[str, str, str, Callable[[Any], Any], Sequence[Any]]] = [
        ("both", "read", "file bytes (page cache)", lambda p: p.read_bytes(), paths),
        ("both", "read", "chunk walk (every CRC)", lambda i: _check_png(blobs[i], paths[i]), range(len(paths))),
        ("before", "read", "pyspng.load (libspng)", lambda b: pyspng.load(b, "RGB"), blobs),
        (
            "before",
            "read",
            "VideoFrame.from_ndarray(rgb24)",
            lambda x: av.VideoFrame.from_ndarray(x, format="rgb24"),
            rgb,
        ),
        (
            "before",
            "convert",
            "frame.reformat yuv420p (new swscale context, auto threads)",
            lambda f: f.reformat(format="yuv420p"),
            as_frames,
        ),
        (
            "now",
            "read",
            "imagecodecs.spng_decode into the reused frame",
            lambda b: imagecodecs.spng_decode(b, out=view),
            blobs,
        ),
        (
            "now",
            "convert",
            "kept VideoReformatter, threads=1",
            lambda f: reformatter.reformat(f, format="yuv420p", threads=1),
            as_frames,
        ),
        ("now", "verify (source)", f"fingerprint of the yuv frame ({label})", fingerprint, yuv),
    ]
    rows = []
    for path, group, stage, fn, items in stages:
        rows.append(
            {
                "path": path,
                "group": group,
                "stage": stage,
                "cpu_ms": cpu_ms_per_item(fn, items),
                "gil_probe_p90_ms": gil_probe_ms(fn, items),
            }
        )
    return rows, {"yuv": yuv}


def _whole_stages(yuv: list[Any], size: tuple[int, int]) -> list[dict[str, Any]]:
    """Time the stages that run over the whole episode (encoder, mux, decode, fingerprints)."""
    settings = _settings()
    n = len(yuv)
    rows: list[dict[str, Any]] = []

    def add(path: str, group: str, stage: str, fn: Callable[[], Any], probe: bool = True) -> Any:
        start = time.process_time()
        result = fn()
        cpu_ms = (time.process_time() - start) / n * 1e3
        gil = gil_probe_ms(lambda _: fn(), [None]) if probe else float("nan")
        rows.append({"path": path, "group": group, "stage": stage, "cpu_ms": cpu_ms, "gil_probe_p90_ms": gil})
        return result

    encoder = f"libsvtav1 p{PRESET} g=2 crf=30 lp=1"
    video = add("both", "encode", f"{encoder}, encode + mux", lambda: _encode_to_memory(yuv, settings, size))
    demux_start = time.process_time()
    _demux(video)
    demux_ms = (time.process_time() - demux_start) / n * 1e3
    add("both", "mux", "mux alone (re-mux minus demux)", lambda: _remux(video), probe=False)
    rows[-1]["cpu_ms"] -= demux_ms
    rows[0]["cpu_ms"] -= rows[-1]["cpu_ms"]
    rows[0]["stage"] = f"{encoder}, encoder alone"
    add("before", "verify", "decode every frame (dav1d, thread_type AUTO)", lambda: _decode_all(video, 0))
    decoded = add("now", "verify", "decode every frame (dav1d, 1 thread)", lambda: _decode_all(video, 1))
    label, fingerprint, compare = fingerprint_functions()
    add("now", "verify", f"fingerprint of each decoded frame ({label})", lambda: [fingerprint(f) for f in decoded])
    own = [fingerprint(f) for f in yuv]
    prints = [fingerprint(f) for f in decoded]
    add(
        "now",
        "verify",
        f"compare fingerprints ({label})",
        lambda: [compare(i, d, own[i], own[i - 1] if i else None) for i, d in enumerate(prints)],
    )
    return rows


def _pipeline(paths: list[Path]) -> dict[str, Any]:
    """The library's real encode (reader thread + encoder) and the service's current verify_video."""
    from robovid.encode import encode_frames_into
    from robovid.verify import verify_video

    out = io.BytesIO()
    keep = {0, len(paths) - 1}
    wall, cpu, result = c.timed(lambda: encode_frames_into(out, paths, c.FPS, _settings(), keep=keep))
    vwall, vcpu, _ = c.timed(lambda: verify_video(out, len(paths), result.kept_frames))
    n = len(paths)
    return {
        "encode_wall_ms": wall / n * 1e3,
        "encode_cpu_ms": cpu / n * 1e3,
        "reader_thread_cpu_ms": result.read_cpu_s / n * 1e3,
        "encoder_side_cpu_ms": (cpu - result.read_cpu_s) / n * 1e3,
        "verify_wall_ms": vwall / n * 1e3,
        "verify_cpu_ms": vcpu / n * 1e3,
        "bytes_per_frame": result.size_bytes / n,
    }


def worker(size_name: str, frames: int) -> None:
    width, height, _ = SIZES[size_name]
    episode = c.episode_dirs(1, SIZES[size_name][2], width, height)[0]
    paths = c.frame_paths(episode)[:frames]
    load_start = c.load_avg()
    rows, data = _per_frame_stages(paths)
    rows += _whole_stages(data["yuv"], (width, height))
    pipeline = _pipeline(paths)
    c.worker_report(size=size_name, frames=len(paths), rows=rows, pipeline=pipeline, load=[load_start, c.load_avg()])


# ---------------------------------------------------------------- parent: tables


def _print(report: dict[str, Any]) -> None:
    rows = report["rows"]
    totals = {p: sum(r["cpu_ms"] for r in rows if r["path"] in ("both", p)) for p in ("before", "now")}
    print(f"\n## {report['size']}, {report['frames']} frames, load {report['load'][0]} -> {report['load'][1]}\n")
    print(
        c.table(
            ["path", "group", "stage", "CPU ms/frame", "share of now", "GIL probe p90 ms", "holds the GIL"],
            [
                [
                    r["path"],
                    r["group"],
                    r["stage"],
                    round(r["cpu_ms"], 2),
                    "-" if r["path"] == "before" else f"{r['cpu_ms'] / totals['now']:.0%}",
                    round(r["gil_probe_p90_ms"], 2),
                    "-"
                    if r["gil_probe_p90_ms"] != r["gil_probe_p90_ms"]
                    else r["gil_probe_p90_ms"] > GIL_HELD_ABOVE_MS,
                ]
                for r in rows
            ],
        )
    )
    print(f"\nsum of the stages, CPU ms/frame: before {totals['before']:.2f}, now {totals['now']:.2f}")
    print()
    print(c.table(["library pipeline (now)", "ms/frame"], [[k, round(v, 2)] for k, v in report["pipeline"].items()]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--worker", nargs=2, metavar=("SIZE", "FRAMES"))
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return 0
    info = c.machine_info()
    info["scheduling"] = c.realtime_note()
    c.print_header("One frame's path at the faithful default (libsvtav1 preset 10, g=2, crf=30, lp=1)", info)
    reports = []
    for size_name in args.sizes.split(","):
        frames = 60 if args.quick else SIZES[size_name][2]
        report = c.run_worker(MODULE, [size_name, str(frames)])
        _print(report)
        reports.append(report)
    info["load_avg_end"] = c.load_avg()
    print(f"\nwrote {c.write_json(NAME, {'machine': info, 'reports': reports})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
