"""Remote decode latency: the same chunk decoded from a local file and from a local S3 server, in one run.

The S3 server is moto's standalone server on 127.0.0.1 (``tests/s3server.py``, the tests'
helper), reached through s3fs over real sockets; it adds HTTP and request handling but no
network distance, so the ratios are robovid's own remote overhead (a real store adds its
round-trip time per request: see the requests column). Chunks: bench_decode's 20-episode
chunk (6000 frames of 640x480 AV1, appended in place: one dead ``free`` box per append) and
the same chunk compacted (``ftyp | mdat | moov``, as robovid leaves a finished file).

- **first frame**: a new ``VideoDecoderCache`` per call (torchcodec; open, parse, seek,
  decode) or a PyAV call (which opens every time): what a data-loader worker pays for a
  file it has not opened yet.
- **warm**: ``decode_video_frames(..., backend="torchcodec")`` with the module's cache
  already holding the decoder; for a remote file each call still asks the store for the
  object's identity (one HEAD request), so a rewritten object is never served stale.

Each call asks for one random timestamp; variants are interleaved call by call in a fresh
random order. Bytes and requests are counted on the block cache of one first-frame open.

    .venv/bin/python -m benchmarks.bench_remote            # 40 calls per variant
    .venv/bin/python -m benchmarks.bench_remote --quick    # 8
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import _common as c
from benchmarks.bench_decode import chunk_path

NAME = "bench_remote"
TOLERANCE_S = 1e-4


def _server() -> Any:
    sys.path.insert(0, str(c.REPO / "tests"))
    from s3server import CREDENTIALS, MotoServer

    server = MotoServer().start()
    os.environ.update(CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL_S3"] = server.url
    return server


def _compacted(appended: Path) -> Path:
    from robovid.compact import compact_chunk

    path = appended.with_name(appended.stem + "-compacted.mp4")
    if not path.exists():
        building = path.with_name(path.stem + ".building.mp4")
        shutil.copyfile(appended, building)
        compact_chunk(building)
        building.rename(path)
    return path


def _variants(files: dict[str, str]) -> dict[str, Callable[[float], Any]]:
    import robovid
    from robovid._decode_torchcodec import decode_video_frames_torchcodec

    calls: dict[str, Callable[[float], Any]] = {}
    for name, location in files.items():
        calls[f"{name}|first frame torchcodec"] = lambda t, p=location: decode_video_frames_torchcodec(
            p, [t], TOLERANCE_S, decoder_cache=robovid.VideoDecoderCache()
        )
        calls[f"{name}|first frame pyav"] = lambda t, p=location: robovid.decode_video_frames(
            p, [t], TOLERANCE_S, "pyav"
        )
        calls[f"{name}|warm torchcodec"] = lambda t, p=location: robovid.decode_video_frames(
            p, [t], TOLERANCE_S, "torchcodec"
        )
    return calls


def _fetched(url: str, timestamp: float) -> tuple[int, int]:
    """Bytes and range requests of one first-frame decode (PyAV through robovid's remote opener)."""
    import av

    from robovid.remote import open_video_file

    handle, _ = open_video_file(url)
    with handle, av.open(handle) as container:
        stream = container.streams.video[0]
        container.seek(int(timestamp / stream.time_base), stream=stream)
        next(container.decode(stream))
        return int(handle.cache.total_requested_bytes), int(handle.cache.miss_count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=None)
    a = parser.parse_args(argv)
    calls_per_variant = a.calls or (8 if a.quick else 40)
    info = c.machine_info()
    c.print_header("Remote decode: local file vs local S3 server (moto, s3fs)", info)
    appended = chunk_path(20)
    compacted = _compacted(appended)
    server = _server()
    try:
        import fsspec

        bucket = server.new_bucket()
        fs = fsspec.filesystem("s3")
        files: dict[str, str] = {}
        for label, path in (("appended", appended), ("compacted", compacted)):
            fs.put_file(str(path), f"{bucket}/{path.name}")
            files[f"local {label}"] = str(path)
            files[f"s3 {label}"] = f"s3://{bucket}/{path.name}"
        frames = 20 * c.EPISODE_FRAMES
        rng = random.Random(7)
        calls = _variants(files)
        for fn in calls.values():  # warm-up: imports, the warm variants' decoders
            fn(0.0)
        samples: dict[str, list[float]] = {key: [] for key in calls}
        for _ in range(calls_per_variant):
            timestamp = rng.randrange(frames) / c.FPS
            order = list(calls)
            rng.shuffle(order)
            for key in order:
                started = time.perf_counter()
                calls[key](timestamp)
                samples[key].append(time.perf_counter() - started)
        fetched = {name: _fetched(url, 5000 / c.FPS) for name, url in files.items() if name.startswith("s3")}
    finally:
        server.kill()
    load_end = c.load_avg()
    rows, ratios = [], {}
    for key, values in samples.items():
        name, what = key.split("|")
        rows.append([name, what, c.median(values) * 1000, c.percentile(values, 95) * 1000])
        if name.startswith("s3"):
            local = samples[key.replace("s3", "local", 1)]
            ratios[f"{what}, {name.split()[1]}: s3 / local (p50)"] = round(c.median(values) / c.median(local), 2)
    print()
    print(c.table(["file", "call", "p50 ms", "p95 ms"], rows))
    sizes = {"s3 appended": appended.stat().st_size, "s3 compacted": compacted.stat().st_size}
    print()
    print(
        c.table(
            ["file", "file MB", "first frame fetched MB", "range requests"],
            [[k, sizes[k] / 1e6, v[0] / 1e6, v[1]] for k, v in fetched.items()],
        )
    )
    c.print_ratios(ratios, "s3 / local, one run")
    print(f"\nload average at start {info['load_avg_start']}, at end {load_end}")
    c.write_json(
        NAME,
        {
            "machine": info,
            "load_avg_end": load_end,
            "calls_per_variant": calls_per_variant,
            "samples_s": samples,
            "fetched": fetched,
            "ratios": ratios,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
