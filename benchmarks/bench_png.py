"""PNG decoders for the encoder's reader thread: CPU, the GIL, and damaged files (issue 8, part 4).

Three parts, on the frames of one natural-content episode (``robovid.synthetic``, written by
Pillow at ``compress_level=1`` as recorders do), bytes already in memory:

- **decoders**: CPU ms per frame of each candidate (median of 5 interleaved passes) and its
  ratio to pyspng (robovid's decoder until issue 8); a **GIL probe** (a second thread
  sleeps 0.2 ms in a loop while the decoder runs; its p90 wake-up latency is ~0.3 ms when the
  decoder releases the GIL, about one decode when it holds it); the wall time of the frames
  decoded by 2 threads against the same work done by 1 thread (0.5 = perfect, 1.0 = no
  parallelism; wall-clock, so it needs 2 idle cores: the load is printed beside it); and a
  pool of 2 processes (CPU of parent + children per frame, the arrays pickled back).
- **inflate**: the zlib stream of the IDAT chunks alone, by zlib, zlib-ng, ISA-L and
  libdeflate: the share of a decode a faster inflate could save (no PNG decoder in a wheel
  pairs libspng's unfiltering with these).
- **damage**: what each decoder does with the damaged and unusual files that
  ``robovid/frames.py``'s docstring tabulates, and what ``read_frame_rgb`` does.

Candidates that are not installed are reported as such (``pip install -e '.[bench]'``).

    .venv/bin/python -m benchmarks.bench_png [--quick] [--size 640x480]
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import _common as c
from benchmarks.bench_path import gil_probe_ms

NAME = "bench_png"
SIZES = {"640x480": (640, 480, 300), "1280x720": (1280, 720, 150)}
Decoder = Callable[[bytes], Any]


# ---------------------------------------------------------------- candidates


def decoders() -> dict[str, Decoder | str]:
    """Name -> ``decode(png_bytes) -> RGB array``, or the reason it is not available."""
    import numpy as np

    found: dict[str, Decoder | str] = {}
    import pyspng

    found["pyspng 0.1.4 (libspng, robovid before)"] = lambda b: pyspng.load(b, "RGB")
    try:
        import imagecodecs

        found["imagecodecs spng_decode (libspng)"] = imagecodecs.spng_decode
        found["imagecodecs png_decode (libpng)"] = imagecodecs.png_decode
    except ImportError:
        found["imagecodecs"] = "not installed"
    try:
        import cv2

        cv2.setNumThreads(1)
        found["OpenCV cv2.imdecode (libpng)"] = lambda b: _opencv_rgb(cv2, np.frombuffer(b, np.uint8))
    except ImportError:
        found["OpenCV"] = "not installed"
    found["Pillow convert('RGB')"] = _pillow_rgb
    return found


def _opencv_rgb(cv2: Any, data: Any) -> Any:
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("cv2.imdecode returned None")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _pillow_rgb(data: bytes) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        return np.asarray(image.convert("RGB"))


def inflaters() -> dict[str, Callable[[bytes, int], Any] | str]:
    found: dict[str, Callable[[bytes, int], Any] | str] = {"zlib (CPython)": lambda s, _n: zlib.decompress(s)}
    try:
        from zlib_ng import zlib_ng

        found["zlib-ng"] = lambda s, _n: zlib_ng.decompress(s)
    except ImportError:
        found["zlib-ng"] = "not installed"
    try:
        from isal import isal_zlib

        found["ISA-L (isal)"] = lambda s, _n: isal_zlib.decompress(s)
    except ImportError:
        found["ISA-L (isal)"] = "not installed"
    try:
        import deflate

        found["libdeflate (deflate)"] = deflate.zlib_decompress
    except ImportError:
        found["libdeflate (deflate)"] = "not installed"
    return found


# ---------------------------------------------------------------- speed


def interleaved_ms(fns: dict[str, Callable[[Any], Any]], items: list[Any], passes: int) -> dict[str, float]:
    """Median over ``passes`` interleaved passes of the CPU ms per item of each function."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(passes):
        for name, fn in fns.items():
            start = time.thread_time()
            for item in items:
                fn(item)
            samples[name].append((time.thread_time() - start) / len(items) * 1e3)
    return {name: c.median(values) for name, values in samples.items()}


def two_thread_wall_ratio(fn: Decoder, blobs: list[bytes]) -> float:
    """Wall time of ``blobs`` decoded twice by 2 threads over the same decoded twice by 1 thread."""
    start = time.perf_counter()
    for _ in range(2):
        for blob in blobs:
            fn(blob)
    sequential = time.perf_counter() - start
    threads = [threading.Thread(target=lambda: [fn(b) for b in blobs]) for _ in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (time.perf_counter() - start) / sequential


def _pool_decode(data: bytes) -> Any:
    import pyspng

    return pyspng.load(data, "RGB")


def process_pool(blobs: list[bytes]) -> dict[str, float]:
    """pyspng in a pool of 2 processes: CPU of parent + children per frame, and wall per frame."""
    import resource

    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_pool_decode, blobs[:4]))  # start the workers outside the measurement
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu, wall = time.process_time(), time.perf_counter()
        list(pool.map(_pool_decode, blobs, chunksize=4))
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the children's CPU is known once they exited: all of it minus their start-up share is an upper bound
    child_cpu = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    return {"cpu_ms": (cpu + child_cpu) / len(blobs) * 1e3, "wall_ms": wall / len(blobs) * 1e3}


def speed(blobs: list[bytes], passes: int) -> dict[str, Any]:
    import numpy as np

    available = {k: v for k, v in decoders().items() if callable(v)}
    reference = np.asarray(available["pyspng 0.1.4 (libspng, robovid before)"](blobs[0]))
    rows = []
    cpu = interleaved_ms(available, blobs, passes)
    base = next(iter(cpu.values()))
    for name, fn in decoders().items():
        if not callable(fn):
            rows.append({"decoder": name, "note": fn})
            continue
        same = bool(np.array_equal(np.asarray(fn(blobs[0])), reference))
        rows.append(
            {
                "decoder": name,
                "cpu_ms": cpu[name],
                "ratio_to_pyspng": cpu[name] / base,
                "gil_probe_p90_ms": gil_probe_ms(fn, blobs),
                "two_threads_wall_ratio": two_thread_wall_ratio(fn, blobs),
                "load": c.load_avg()[0],
                "same_pixels": same,
            }
        )
    pool = process_pool(blobs)
    rows.append(
        {
            "decoder": "pyspng in a pool of 2 processes",
            "cpu_ms": pool["cpu_ms"],
            "ratio_to_pyspng": pool["cpu_ms"] / base,
            "note": f"wall {pool['wall_ms']:.2f} ms/frame",
        }
    )
    return {"rows": rows}


def inflate(blobs: list[bytes], passes: int) -> dict[str, Any]:
    streams = [_idat_stream(b) for b in blobs]
    raw_bytes = len(zlib.decompress(streams[0]))
    available = {k: v for k, v in inflaters().items() if callable(v)}
    fns = {k: (lambda s, f=f: f(s, raw_bytes)) for k, f in available.items()}
    cpu = interleaved_ms(fns, streams, passes)
    base = cpu["zlib (CPython)"]
    rows = [{"inflate": k, "cpu_ms": v, "ratio_to_zlib": v / base} for k, v in cpu.items()]
    rows += [{"inflate": k, "note": v} for k, v in inflaters().items() if not callable(v)]
    return {"rows": rows, "raw_bytes": raw_bytes}


def _idat_stream(png: bytes) -> bytes:
    pos, parts = 8, []
    while pos < len(png):
        length, kind = struct.unpack_from(">I4s", png, pos)
        if kind == b"IDAT":
            parts.append(png[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return b"".join(parts)


# ---------------------------------------------------------------- damaged and unusual files


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(w: int, h: int, color_type: int, depth: int, rows: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def _chunk_at(data: bytes, kind: bytes) -> tuple[int, int]:
    pos = 8
    while True:
        length, found = struct.unpack_from(">I4s", data, pos)
        if found == kind:
            return pos, length
        pos += 12 + length


def damage_cases() -> dict[str, tuple[bytes, Any]]:
    """Case name -> (file bytes, the pixels a faithful decoder returns, or None when none is right)."""
    import numpy as np
    from PIL import Image

    w, h = 64, 48
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)

    def png(image: Any, **options: Any) -> bytes:
        buffer = io.BytesIO()
        (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(
            buffer, format="PNG", compress_level=1, **options
        )
        return buffer.getvalue()

    good = png(rgb)
    idat, length = _chunk_at(good, b"IDAT")
    flipped = bytearray(good)
    flipped[idat + 8 + length // 2] ^= 0xFF
    recrc = bytearray(flipped)
    recrc[idat + 8 + length : idat + 12 + length] = struct.pack(
        ">I", zlib.crc32(bytes(recrc[idat + 4 : idat + 8 + length]))
    )
    short_rows = b"".join(b"\0" + row.tobytes() for row in rgb[: h // 2])
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG")
    rgb16 = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgb.astype(np.uint16) * 257)
    grey = rgb[..., 0]
    palette = Image.fromarray(rgb).quantize(16)
    return {
        "intact 8-bit RGB": (good, rgb),
        "truncated in the middle": (good[: len(good) // 2], None),
        "truncated just before IEND": (good[: _chunk_at(good, b"IEND")[0]], None),
        "byte flipped in IDAT (bad CRC)": (bytes(flipped), None),
        "same, CRC recomputed": (bytes(recrc), None),
        "IDAT data too short, CRCs fine": (_raw_png(w, h, 2, 8, short_rows), None),
        "JPEG renamed .png": (jpeg.getvalue(), None),
        "zero-byte file": (b"", None),
        "16-bit RGB": (_raw_png(w, h, 2, 16, rgb16), None),
        "8-bit grey": (png(grey), np.repeat(grey[..., None], 3, axis=2)),
        "1-bit grey": (png(Image.fromarray(grey > 127)), np.repeat((grey > 127)[..., None], 3, axis=2) * 255),
        "grey+alpha, opaque": (png(Image.fromarray(grey).convert("LA")), np.repeat(grey[..., None], 3, axis=2)),
        "palette": (png(palette), np.asarray(palette.convert("RGB"))),
        "palette with tRNS (entry 0 transparent)": (
            png(palette, transparency=0),
            _rgba_of(png(palette, transparency=0)),
        ),
        "RGBA, opaque": (png(np.dstack([rgb, np.full((h, w), 255, np.uint8)])), rgb),
    }


def _rgba_of(data: bytes) -> Any:
    """The RGBA pixels of a PNG with its transparency, by Pillow (the right answer for a tRNS case)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA"))


def outcome(fn: Callable[[bytes], Any], data: bytes, expected: Any) -> str:
    import numpy as np

    try:
        result = np.asarray(fn(data))
    except Exception as error:  # any failure is an outcome here
        return f"error ({type(error).__name__}: {str(error)[:50]})"
    shape = f"{result.dtype} {'x'.join(map(str, result.shape))}"
    if expected is None:
        return f"**silent** ({shape})"
    if result.shape == expected.shape and np.array_equal(result, expected):
        return "right pixels"
    if result.ndim == 2 and np.array_equal(result, expected[..., 0]):
        return "right values, as grey (H, W)"
    if result.ndim == 3 and result.shape[2] == 4 and np.array_equal(result[..., :3], expected):
        return "right values, as RGBA"
    if expected.ndim == 3 and expected.shape[2] == 4 and np.array_equal(result, expected[..., :3]):
        return "**silent, alpha dropped**"
    if result.ndim == 3 and result.shape[2] == 2 and np.array_equal(result[..., 0], expected[..., 0]):
        return "right values, as grey+alpha"
    return f"**silent, wrong** ({shape})"


def _robovid_read(data: bytes) -> Any:
    import tempfile

    from robovid.frames import read_frame_rgb

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame-000000.png"
        path.write_bytes(data)
        return read_frame_rgb(path)


def damage() -> dict[str, Any]:
    available = {k: v for k, v in decoders().items() if callable(v)}
    available["robovid read_frame_rgb"] = _robovid_read
    rows = []
    for case, (data, expected) in damage_cases().items():
        rows.append({"damage": case, **{name: outcome(fn, data, expected) for name, fn in available.items()}})
    return {"rows": rows}


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", default="640x480", choices=SIZES)
    parser.add_argument("--only", nargs="+", default=["decoders", "inflate", "damage"])
    args = parser.parse_args(argv)
    info = c.machine_info()
    info["scheduling"] = c.realtime_note()
    c.print_header("PNG decoding: CPU, the GIL, damaged files", info)
    width, height, frames = SIZES[args.size]
    episode = c.episode_dirs(1, frames, width, height)[0]
    blobs = [p.read_bytes() for p in c.frame_paths(episode)[: 30 if args.quick else 100]]
    passes = 3 if args.quick else 5
    results: dict[str, Any] = {"size": args.size, "frames": len(blobs)}
    if "decoders" in args.only:
        results["decoders"] = speed(blobs, passes)
        _print_rows(f"decoders, {args.size}, {len(blobs)} frames", results["decoders"]["rows"])
    if "inflate" in args.only:
        results["inflate"] = inflate(blobs, passes)
        _print_rows(f"inflate alone ({results['inflate']['raw_bytes']} bytes a frame)", results["inflate"]["rows"])
    if "damage" in args.only:
        results["damage"] = damage()
        _print_rows("damaged and unusual files", results["damage"]["rows"])
    info["load_avg_end"] = c.load_avg()
    print(f"\nload {info['load_avg_start']} -> {info['load_avg_end']}")
    print(f"wrote {c.write_json(NAME, {'machine': info, **results})}")
    return 0


def _print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    headers: list[str] = []
    for row in rows:
        headers += [k for k in row if k not in headers]
    print(f"\n## {title}\n")
    print(c.table(headers, [[_rounded(row.get(h, "")) for h in headers] for row in rows]))


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


if __name__ == "__main__":
    sys.exit(main())
