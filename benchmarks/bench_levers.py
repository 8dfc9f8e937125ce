"""The levers on a frame's CPU at the faithful default, each as a ratio to the path before (issue 8, part 4).

Every comparison runs in one process, its variants interleaved pass by pass (median of the
passes), on the frames of one natural-content episode (``robovid.synthetic``); CPU is the
whole process's (``CLOCK_PROCESS_CPUTIME_ID``: swscale's, dav1d's and SVT-AV1's own threads
included), so a ratio holds on a loaded machine where wall-clock does not.

- **reader**: the reader thread's work per frame, PNG bytes in memory to a yuv420p frame:
  the path before issue 8 (pyspng, ``VideoFrame.from_ndarray``, ``frame.reformat``, which
  builds a new swscale context with automatic threads per call), then one change at a time:
  imagecodecs' libspng (releases the GIL), decoding into a reused frame's buffer (no copy, no
  new buffer), a kept ``VideoReformatter``, swscale on 1 thread. Each variant's output equals
  the path before (checked). GIL probe as in ``bench_path``.
- **encoder**: SVT-AV1 ``lp`` (1, 2, 0 = SVT's choice) on frames in memory, preset 10.
- **verify**: decoding every frame with PyAV (dav1d: the only AV1 decoder in PyAV's wheel;
  FFmpeg's native ``av1`` decoder needs a hardware device) by thread type and count, and
  per-frame fingerprints (means of 16x16 tiles) computed in four ways.
- **two encodes at once** (the service's two workers): two ``encode_frames_into`` in two threads
  of one process against the same two in two processes, with robovid's decoder and with pyspng
  patched in (holds the GIL): wall and CPU per frame, median of 3 rounds (the GIL's price; wall
  clock, so only meaningful on a quiet machine: the load is listed).

    .venv/bin/python -m benchmarks.bench_levers [--quick] [--size 640x480] [--only reader verify]
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import _common as c
from benchmarks.bench_path import gil_probe_ms

NAME = "bench_levers"
SIZES = {"640x480": (640, 480, 300), "1280x720": (1280, 720, 150)}
PRESET = 10
TILE_PX = 16


def interleaved_cpu_ms(fns: dict[str, Callable[[], Any]], per_call_items: int, passes: int) -> dict[str, float]:
    """Median over interleaved passes of the process CPU ms per item of each ``fn()`` call."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(passes):
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            samples[name].append((time.process_time() - start) / per_call_items * 1e3)
    return {name: c.median(values) for name, values in samples.items()}


def ratio_rows(cpu: dict[str, float], extra: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    base = next(iter(cpu.values()))
    return [
        {"variant": k, "cpu_ms": v, "ratio": v / base, **(extra or {}).get(k, {})}  # first row = the baseline
        for k, v in cpu.items()
    ]


# ---------------------------------------------------------------- reader thread


def reader_variants(width: int, height: int) -> dict[str, Callable[[bytes], Any]]:
    """Per-frame reader paths, PNG bytes -> yuv420p VideoFrame, from the old one to robovid's."""
    import av
    import imagecodecs
    import numpy as np
    import pyspng
    from av.video.reformatter import VideoReformatter

    reused = av.VideoFrame(width, height, "rgb24")
    view = np.frombuffer(memoryview(reused.planes[0]), np.uint8, count=width * height * 3).reshape(height, width, 3)
    kept_auto, kept_one = VideoReformatter(), VideoReformatter()

    return {
        "before: pyspng + from_ndarray + frame.reformat": lambda b: av.VideoFrame.from_ndarray(
            pyspng.load(b, "RGB"), format="rgb24"
        ).reformat(format="yuv420p"),
        "imagecodecs spng_decode + from_ndarray + frame.reformat": lambda b: av.VideoFrame.from_ndarray(
            imagecodecs.spng_decode(b), format="rgb24"
        ).reformat(format="yuv420p"),
        "+ decoded into a reused frame (no copy)": lambda b: (imagecodecs.spng_decode(b, out=view), reused)[1].reformat(
            format="yuv420p"
        ),
        "+ a kept VideoReformatter (threads auto)": lambda b: kept_auto.reformat(
            (imagecodecs.spng_decode(b, out=view), reused)[1], format="yuv420p"
        ),
        "+ swscale on 1 thread (robovid now)": lambda b: kept_one.reformat(
            (imagecodecs.spng_decode(b, out=view), reused)[1], format="yuv420p", threads=1
        ),
        "pyspng + reused frame + kept reformatter, 1 thread": lambda b: kept_one.reformat(
            (np.copyto(view, pyspng.load(b, "RGB")), reused)[1], format="yuv420p", threads=1
        ),
    }


def reader(blobs: list[bytes], width: int, height: int, passes: int) -> list[dict[str, Any]]:
    import numpy as np

    from robovid.frames import _check_png

    variants = reader_variants(width, height)
    reference = [next(iter(variants.values()))(b).to_ndarray() for b in blobs[:3]]
    for name, fn in variants.items():
        if not all(np.array_equal(fn(b).to_ndarray(), r) for b, r in zip(blobs, reference, strict=False)):
            raise AssertionError(f"reader variant {name!r} changes the pixels")
    fns: dict[str, Callable[[], Any]] = {k: (lambda f=f: [f(b) for b in blobs]) for k, f in variants.items()}
    fns["chunk walk (every CRC), unchanged"] = lambda: [_check_png(b, Path("frame.png")) for b in blobs]
    cpu = interleaved_cpu_ms(fns, len(blobs), passes)
    probes = {k: {"gil_probe_p90_ms": gil_probe_ms(f, blobs)} for k, f in variants.items()}
    return ratio_rows(cpu, probes)


# ---------------------------------------------------------------- encoder threads


def encoder(yuv: list[Any], width: int, height: int, passes: int) -> list[dict[str, Any]]:
    from robovid.settings import EncoderSettings

    def encode(threads: int) -> Callable[[], Any]:
        settings = EncoderSettings(preset=PRESET, threads=threads)
        return lambda: c.encode_yuv_frames(
            io.BytesIO(), settings.encoder_name, settings.codec_options(), yuv, (width, height)
        )

    fns = {"SVT lp=1 (robovid's default)": encode(1), "SVT lp=2": encode(2), "SVT's choice (lp=0)": encode(0)}
    return ratio_rows(interleaved_cpu_ms(fns, len(yuv), passes))


# ---------------------------------------------------------------- verify


def verify(video: bytes, n: int, passes: int) -> list[dict[str, Any]]:
    import av

    def decode(thread_type: str, count: int) -> Callable[[], Any]:
        def run() -> list[Any]:
            with av.open(io.BytesIO(video)) as container:
                stream = container.streams.video[0]
                stream.thread_type, stream.thread_count = thread_type, count
                return list(container.decode(stream))

        return run

    fns = {
        "thread_type AUTO, count 0 (robovid's verify)": decode("AUTO", 0),
        "FRAME, count 2": decode("FRAME", 2),
        "SLICE, count 2": decode("SLICE", 2),
        "FRAME, count 1": decode("FRAME", 1),
    }
    rows = ratio_rows(interleaved_cpu_ms(fns, n, passes))
    for row in rows:
        row["variant"] = "decode every frame: " + row["variant"]
    return rows


def fingerprints(video: bytes, n: int, passes: int) -> list[dict[str, Any]]:
    """Per-tile means of each decoded frame, four ways; the first is the plain numpy estimate."""
    import av
    import numpy as np

    with av.open(io.BytesIO(video)) as container:
        frames = list(container.decode(video=0))
    rgb = [f.to_ndarray(format="rgb24") for f in frames]

    def tiles_float(image: Any) -> Any:
        h, w = image.shape[0] // TILE_PX * TILE_PX, image.shape[1] // TILE_PX * TILE_PX
        shape = (h // TILE_PX, TILE_PX, w // TILE_PX, TILE_PX, *image.shape[2:])
        return image[:h, :w].reshape(shape).mean(axis=(1, 3), dtype=np.float32)

    def tiles_sum16(image: Any) -> Any:
        """Rows summed as uint16 first (16 x 255 fits), then columns: integer sums, no float pass."""
        h, w = image.shape[0] // TILE_PX * TILE_PX, image.shape[1] // TILE_PX * TILE_PX
        rows = image[:h, :w].reshape(h // TILE_PX, TILE_PX, -1).sum(axis=1, dtype=np.uint16)
        return rows.reshape(h // TILE_PX, w // TILE_PX, TILE_PX, -1).sum(axis=2, dtype=np.uint32)

    def luma(frame: Any) -> Any:
        plane = frame.planes[0]
        width, height = frame.width, frame.height
        full = np.frombuffer(memoryview(plane), np.uint8).reshape(height, plane.line_size)
        return full[:, :width]

    fns = {
        "RGB (to_ndarray) + float32 tile means": lambda: [tiles_float(f.to_ndarray(format="rgb24")) for f in frames],
        "RGB (to_ndarray) + uint16 row sums": lambda: [tiles_sum16(f.to_ndarray(format="rgb24")) for f in frames],
        "Y plane view + uint16 row sums": lambda: [tiles_sum16(luma(f)) for f in frames],
        "RGB already decoded, uint16 row sums": lambda: [tiles_sum16(x) for x in rgb],
    }
    try:
        import cv2

        cv2.setNumThreads(1)
        fns["Y plane view + cv2.resize INTER_AREA"] = lambda: [
            cv2.resize(luma(f), None, fx=1 / TILE_PX, fy=1 / TILE_PX, interpolation=cv2.INTER_AREA) for f in frames
        ]
    except ImportError:
        pass
    rows = ratio_rows(interleaved_cpu_ms(fns, n, passes))
    for row in rows:
        row["variant"] = f"fingerprint ({TILE_PX}px tiles): " + row["variant"]
    return rows


# ---------------------------------------------------------------- two encodes at once


def _encode_episode(frame_paths: list[str], decoder: str = "imagecodecs") -> tuple[float, float]:
    """One library encode (reader thread + encoder) into memory: (wall s, this process's CPU s).

    ``decoder="pyspng"`` swaps robovid's PNG decode for pyspng's (which holds the GIL) in this
    process, to price the GIL: a benchmark-only patch, the encode is otherwise robovid's.
    """
    from robovid import frames
    from robovid.encode import encode_frames_into
    from robovid.settings import EncoderSettings

    original = frames._decode_spng_rgb
    if decoder == "pyspng":
        frames._decode_spng_rgb = _pyspng_into  # type: ignore[assignment]
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        settings = EncoderSettings(preset=PRESET, threads=1)
        encode_frames_into(io.BytesIO(), [Path(p) for p in frame_paths], c.FPS, settings)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        frames._decode_spng_rgb = original


def _pyspng_into(data: bytes, _path: Path, out: Any) -> Any:
    import numpy as np
    import pyspng

    rgb = pyspng.load(data, "RGB")
    if out is None:
        return rgb
    np.copyto(out, rgb)
    return out


def two_at_once(paths: list[str], rounds: int) -> list[dict[str, Any]]:
    """Two encodes at once, as the service's two workers run them: in 2 threads or in 2 processes."""
    samples: dict[str, list[tuple[float, float, float]]] = {}
    for _ in range(rounds):
        for decoder in ("imagecodecs", "pyspng"):
            for label in ("threads", "processes"):
                load = c.load_avg()[0]
                wall, cpu = _two(paths, decoder, label)
                key = f"2 encodes in 2 {label}, {decoder} decoder"
                samples.setdefault(key, []).append((wall, cpu, load))
    per_frame = 1e3 / (2 * len(paths))
    return [
        {
            "variant": key,
            "wall_ms": c.median([w for w, _, _ in values]) * per_frame,
            "cpu_ms": c.median([u for _, u, _ in values]) * per_frame,
            "wall_ms_all": [round(w * per_frame, 2) for w, _, _ in values],
            "load": [v[2] for v in values],
        }
        for key, values in samples.items()
    ]


def _two(paths: list[str], decoder: str, label: str) -> tuple[float, float]:
    if label == "threads":
        cpu, wall = time.process_time(), time.perf_counter()
        workers = [threading.Thread(target=_encode_episode, args=(paths, decoder)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.perf_counter() - wall, time.process_time() - cpu
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_encode_episode, [paths[:2]] * 2, [decoder] * 2))  # workers started and warm
        start = time.perf_counter()
        results = list(pool.map(_encode_episode, [paths] * 2, [decoder] * 2))
        return time.perf_counter() - start, sum(r[1] for r in results)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", default="640x480", choices=SIZES)
    parser.add_argument("--only", nargs="+", default=["reader", "encoder", "verify", "two"])
    args = parser.parse_args(argv)
    info = c.machine_info()
    info["scheduling"] = c.realtime_note()
    c.print_header(f"Levers at the faithful default (libsvtav1 preset {PRESET}, g=2, crf=30)", info)
    width, height, frames = SIZES[args.size]
    paths = c.frame_paths(c.episode_dirs(1, frames, width, height)[0])[: 40 if args.quick else 120]
    blobs = [p.read_bytes() for p in paths]
    passes = 3 if args.quick else 5
    results: dict[str, Any] = {"size": args.size, "frames": len(paths)}
    sections: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "reader": lambda: reader(blobs, width, height, passes),
        "encoder": lambda: encoder(_yuv(blobs), width, height, max(2, passes - 2)),
        "verify": lambda: _verify_sections(_yuv(blobs), width, height, passes),
        "two": lambda: two_at_once([str(p) for p in paths], 1 if args.quick else 3),
    }
    for name in args.only:
        load = c.load_avg()
        results[name] = sections[name]()
        print(f"\n## {name}, {args.size}, {len(paths)} frames, load {load} -> {c.load_avg()}\n")
        _print(results[name])
    info["load_avg_end"] = c.load_avg()
    print(f"\nwrote {c.write_json(f'{NAME}-{args.size}', {'machine': info, **results})}")
    return 0


def _yuv(blobs: list[bytes]) -> list[Any]:
    import av
    import imagecodecs

    return [
        av.VideoFrame.from_ndarray(imagecodecs.spng_decode(b), format="rgb24").reformat(format="yuv420p") for b in blobs
    ]


def _verify_sections(yuv: list[Any], width: int, height: int, passes: int) -> list[dict[str, Any]]:
    from robovid.settings import EncoderSettings

    buffer = io.BytesIO()
    settings = EncoderSettings(preset=PRESET)
    c.encode_yuv_frames(buffer, settings.encoder_name, settings.codec_options(), yuv, (width, height))
    video = buffer.getvalue()
    return verify(video, len(yuv), passes) + fingerprints(video, len(yuv), passes)


def _print(rows: list[dict[str, Any]]) -> None:
    headers: list[str] = []
    for row in rows:
        headers += [k for k in row if k not in headers]
    print(
        c.table(
            headers, [[round(r[h], 3) if isinstance(r.get(h), float) else r.get(h, "") for h in headers] for r in rows]
        )
    )


if __name__ == "__main__":
    sys.exit(main())
