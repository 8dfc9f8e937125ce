"""Depth cameras: which codec keeps 16-bit millimetre depth exact (or how close), at what size and CPU.

Content: :mod:`robovid.synthetic_depth` 640x480 depth maps of a panning room (floor, walls,
boxes, spheres, one moving), with stereo noise growing as z^2 (``raw``; ``filtered`` is the
same at a quarter of the noise, as after a recorder's spatial/temporal filters; ``simulated``
has none, as a simulator's depth) and holes (0: stereo shadows, a window, speckle). Each candidate encodes the same frames in a fresh
MP4 through PyAV, then every frame is decoded back to millimetres and compared pixel by pixel
with its source:

- ``max_err_mm`` / ``mean_err_mm``: over pixels the camera measured (source > 0);
- ``exact``: share of all pixels decoded to exactly their source value;
- ``holes_kept``: share of holes (0) decoded as 0; ``false_holes``: measured pixels decoded as 0;
- ``bytes/frame`` and the ratio to the recorder's 16-bit PNGs (zlib level 1) of the same frames;
- encoder and decoder CPU ms per frame (process CPU, all threads);
- ``append``: robovid's in-place append of a second episode to the file works and every frame
  reads back; ``torchcodec``: torchcodec 0.13 opens the file and seeks to its last frame
  (it returns 8-bit RGB, so depth is decoded with PyAV, as LeRobot does).

Candidates: FFV1 (lossless, gray16le), LeRobot's HEVC Main 12 path (``gray12le``, log-quantized
12-bit codes, x265 ``lossless=1``, and the same at crf 30 without lossless), HEVC 12-bit with
plain millimetres (exact up to 4095 mm), x264/x265 lossless with the 16 bits split over two planes,
lossless JPEG 2000, and PNG inside MP4.

    .venv/bin/python -m benchmarks.bench_depth             # 150 frames per content
    .venv/bin/python -m benchmarks.bench_depth --quick     # 20 frames
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from benchmarks import _common as c

NAME = "bench_depth"
CONTENTS = {"raw": 1.0, "filtered": 0.25, "simulated": 0.0}

Depth = np.ndarray


@dataclass(frozen=True)
class Candidate:
    name: str
    encoder: str
    pix_fmt: str
    options: dict[str, str]
    to_frame: Callable[[Depth], av.VideoFrame]
    from_frame: Callable[[av.VideoFrame], Depth]
    note: str = ""
    strict: bool = False


def _plane16(frame: av.VideoFrame, plane: int, values: np.ndarray) -> None:
    """Write uint16 ``values`` into a 16-bit-per-sample plane of ``frame`` (no bit-depth scaling)."""
    p = frame.planes[plane]
    rows = np.frombuffer(memoryview(p), dtype=np.uint16).reshape(p.height, p.line_size // 2)
    rows[:, : p.width] = values


def _read16(frame: av.VideoFrame, plane: int) -> np.ndarray:
    p = frame.planes[plane]
    rows = np.frombuffer(memoryview(p), dtype=np.uint16).reshape(p.height, p.line_size // 2)
    return rows[:, : p.width].copy()


def _gray16(depth: Depth) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(depth), format="gray16le")


def _from_gray16(frame: av.VideoFrame) -> Depth:
    return frame.to_ndarray(format="gray16le")


def _gray12(codes: np.ndarray) -> av.VideoFrame:
    frame = av.VideoFrame(codes.shape[1], codes.shape[0], "gray12le")
    _plane16(frame, 0, codes)
    return frame


def _log_codes(depth: Depth) -> np.ndarray:
    """LeRobot's quantizer (log mode, mm input), as robovid implements it (robovid.depth.quantize_depth)."""
    from robovid.depth import quantize_depth

    return quantize_depth(depth)


def _log_depth(codes: np.ndarray) -> Depth:
    """LeRobot's dequantizer (log mode, mm output)."""
    from robovid.depth import dequantize_depth

    return np.asarray(dequantize_depth(codes), dtype=np.uint16)


def _split8(depth: Depth) -> av.VideoFrame:
    planes = np.stack([(depth >> 8).astype(np.uint8), (depth & 0xFF).astype(np.uint8), np.zeros_like(depth, np.uint8)])
    return av.VideoFrame.from_ndarray(planes, format="yuv444p")


def _join8(frame: av.VideoFrame) -> Depth:
    planes = frame.to_ndarray(format="yuv444p")
    return (planes[0].astype(np.uint16) << 8) | planes[1]


def _split12(depth: Depth) -> av.VideoFrame:
    frame = av.VideoFrame(depth.shape[1], depth.shape[0], "yuv444p12le")
    _plane16(frame, 0, depth >> 4)
    _plane16(frame, 1, depth & 0xF)
    _plane16(frame, 2, np.zeros_like(depth))
    return frame


def _join12(frame: av.VideoFrame) -> Depth:
    return (_read16(frame, 0) << 4) | _read16(frame, 1)


_X265 = "log-level=error:no-open-gop=1:bframes=0"


def _robovid_options(config_kwargs: dict[str, Any] | None = None, exact: bool = False) -> dict[str, str]:
    """The FFmpeg options robovid itself passes for this DepthEncoderConfig (what robovid ships, measured)."""
    from robovid.depth_config import DepthEncoderConfig

    config = DepthEncoderConfig.exact() if exact else DepthEncoderConfig(**(config_kwargs or {}))
    return config.to_settings().codec_options()


CANDIDATES = [
    Candidate(
        "ffv1",
        "ffv1",
        "gray16le",
        _robovid_options(exact=True),
        _gray16,
        _from_gray16,
        "robovid's exact depth: DepthEncoderConfig.exact()",
    ),
    Candidate(
        "ffv1-l3",
        "ffv1",
        "gray16le",
        {"g": "1", "level": "3", "coder": "range_def", "context": "1", "slicecrc": "1"},
        _gray16,
        _from_gray16,
        "level 3, range coder, large context, slice CRCs",
    ),
    Candidate(
        "hevc12-log-lossless",
        "libx265",
        "gray12le",
        _robovid_options(),
        lambda d: _gray12(_log_codes(d)),
        lambda f: _log_depth(_read16(f, 0)),
        "LeRobot's DepthEncoderConfig() defaults",
    ),
    Candidate(
        "hevc12-log-crf30",
        "libx265",
        "gray12le",
        _robovid_options({"extra_options": {}}),
        lambda d: _gray12(_log_codes(d)),
        lambda f: _log_depth(_read16(f, 0)),
        "LeRobot's config with extra_options={} (its tests)",
    ),
    Candidate(
        "hevc12-mm-lossless",
        "libx265",
        "gray12le",
        {"g": "2", "x265-params": f"lossless=1:{_X265}"},
        lambda d: _gray12(np.minimum(d, 4095)),
        lambda f: _read16(f, 0),
        "millimetres clipped at 4095",
    ),
    Candidate(
        "x264-split-lossless",
        "libx264",
        "yuv444p",
        {"g": "2", "qp": "0", "bf": "0"},
        _split8,
        _join8,
        "high byte in Y, low byte in U",
    ),
    Candidate(
        "x265-split12-lossless",
        "libx265",
        "yuv444p12le",
        {"g": "2", "x265-params": f"lossless=1:{_X265}"},
        _split12,
        _join12,
        "top 12 bits in Y, low 4 in U",
    ),
    Candidate(
        "jpeg2000-lossless", "jpeg2000", "gray16le", {"g": "1", "pred": "1"}, _gray16, _from_gray16, "5/3 wavelet"
    ),
    Candidate(
        "png-in-mp4", "png", "gray16be", {"g": "1"}, lambda d: _gray16(d).reformat(format="gray16be"), _from_gray16
    ),
]


@dataclass
class Result:
    candidate: str
    content: str
    frames: int
    bytes_per_frame: float = math.nan
    png_ratio: float = math.nan
    encode_ms: float = math.nan
    decode_ms: float = math.nan
    max_err_mm: float = math.nan
    mean_err_mm: float = math.nan
    p99_err_mm: float = math.nan
    exact: float = math.nan
    holes_kept: float = math.nan
    false_holes: float = math.nan
    append: str = "-"
    torchcodec: str = "-"
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def render(content: str, num_frames: int, episode: int = 0) -> list[Depth]:
    """The frames of one episode (cached under benchmarks/out/cache)."""
    from robovid.synthetic_depth import depth_scene, render_depth

    cache = c.CACHE_DIR / f"depth-{content}-{c.WIDTH}x{c.HEIGHT}-e{episode}-{num_frames}.npy"
    if cache.exists():
        return list(np.load(cache))
    scene = depth_scene(seed=7)
    frames = [render_depth(scene, c.WIDTH, c.HEIGHT, episode, i, CONTENTS[content]) for i in range(num_frames)]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, np.stack(frames))
    return frames


def png_bytes(frames: list[Depth]) -> float:
    import imagecodecs

    return float(np.mean([len(imagecodecs.png_encode(f, level=1)) for f in frames]))


def encode(cand: Candidate, frames: list[Depth], out: io.BytesIO | Path) -> float:
    """Encode ``frames``; return the process CPU seconds it took (conversion included)."""
    h, w = frames[0].shape
    started = c.cpu_s()
    with av.open(out if isinstance(out, io.BytesIO) else str(out), "w", format="mp4") as container:
        stream = container.add_stream(cand.encoder, rate=c.FPS, options=cand.options)
        stream.width, stream.height, stream.pix_fmt = w, h, cand.pix_fmt
        for i, depth in enumerate(frames):
            frame = cand.to_frame(depth)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return c.cpu_s() - started


def decode(cand: Candidate, source: io.BytesIO | Path) -> tuple[list[Depth], float]:
    started = c.cpu_s()
    if isinstance(source, io.BytesIO):
        source.seek(0)
    with av.open(source if isinstance(source, io.BytesIO) else str(source)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        decoded = [cand.from_frame(f) for f in container.decode(stream)]
    return decoded, c.cpu_s() - started


def compare(result: Result, sources: list[Depth], decoded: list[Depth]) -> None:
    if len(decoded) != len(sources):
        result.error = f"decoded {len(decoded)} frames of {len(sources)}"
        return
    src = np.stack(sources).astype(np.int32)
    dec = np.stack(decoded).astype(np.int32)
    err = np.abs(dec - src)
    measured = src > 0
    result.max_err_mm = float(err[measured].max())
    result.mean_err_mm = float(err[measured].mean())
    result.p99_err_mm = float(np.percentile(err[measured], 99))
    result.exact = float((err == 0).mean())
    result.holes_kept = float((dec[~measured] == 0).mean()) if (~measured).any() else math.nan
    result.false_holes = float((dec[measured] == 0).mean())


def check_append_and_torchcodec(cand: Candidate, frames: list[Depth], result: Result) -> None:
    """Append a second episode in place with robovid and read every frame back; open it with torchcodec."""
    from robovid.append import append_video

    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "chunk.mp4", Path(tmp) / "episode.mp4"
        half = len(frames) // 2
        first_copy = Path(tmp) / "first.mp4"
        encode(cand, frames[:half], first_copy)
        first.write_bytes(first_copy.read_bytes())
        encode(cand, frames[half:], second)
        try:
            append_video(first, second)
            decoded, _ = decode(cand, first)
            # the append is stream copy: each frame must decode as it did from its own episode file
            alone = decode(cand, first_copy)[0] + decode(cand, second)[0]
            same = len(decoded) == len(frames) and all(
                np.array_equal(a, d) for a, d in zip(alone, decoded, strict=True)
            )
            result.append = "yes" if same else "frames differ"
            expected = len(frames)
        except Exception as error:  # a candidate that fails is a row of the table, not a crash
            result.append = f"no: {type(error).__name__}"
            expected = half
        result.torchcodec = _torchcodec_opens(first, expected)


def _torchcodec_opens(path: Path, expected: int) -> str:
    try:
        from torchcodec.decoders import VideoDecoder

        decoder = VideoDecoder(str(path), seek_mode="exact")
        if decoder.metadata.num_frames != expected:
            return f"{decoder.metadata.num_frames} frames"
        decoder.get_frame_at(expected - 1)
        return "yes"
    except Exception as error:
        return f"no: {type(error).__name__}"


def run(content: str, num_frames: int, names: list[str]) -> list[Result]:
    frames = render(content, num_frames)
    png = png_bytes(frames)
    results = []
    for cand in [x for x in CANDIDATES if x.name in names]:
        result = Result(cand.name, content, num_frames)
        try:
            buf = io.BytesIO()
            enc_s = encode(cand, frames, buf)
            decoded, dec_s = decode(cand, buf)
            result.bytes_per_frame = buf.getbuffer().nbytes / num_frames
            result.png_ratio = png / result.bytes_per_frame
            result.encode_ms = enc_s / num_frames * 1000
            result.decode_ms = dec_s / num_frames * 1000
            compare(result, frames, decoded)
            check_append_and_torchcodec(cand, frames[: min(num_frames, 20)], result)
        except Exception as error:
            result.error = f"{type(error).__name__}: {error}"
        result.extra = {"png_bytes_per_frame": png, "load": c.load_avg()}
        print(f"  {content:8s} {cand.name:24s} done (load {c.load_avg()[0]})", flush=True)
        results.append(result)
    return results


HEADERS = [
    "codec",
    "content",
    "kB/frame",
    "x smaller than PNG",
    "enc ms/frame",
    "dec ms/frame",
    "max err mm",
    "mean err mm",
    "p99 err mm",
    "exact px",
    "holes kept",
    "false holes",
    "append",
    "torchcodec",
]


def row(r: Result) -> list[Any]:
    return [
        r.candidate,
        r.content,
        r.bytes_per_frame / 1000,
        r.png_ratio,
        r.encode_ms,
        r.decode_ms,
        r.max_err_mm,
        r.mean_err_mm,
        r.p99_err_mm,
        f"{r.exact:.4f}" if not math.isnan(r.exact) else "-",
        f"{r.holes_kept:.3f}" if not math.isnan(r.holes_kept) else "-",
        f"{r.false_holes:.4f}" if not math.isnan(r.false_holes) else "-",
        r.append,
        r.torchcodec + (f" ({r.error})" if r.error else ""),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 frames per content")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--only", nargs="+", default=[x.name for x in CANDIDATES])
    parser.add_argument("--contents", nargs="+", default=list(CONTENTS), choices=list(CONTENTS))
    a = parser.parse_args(argv)
    num_frames = 20 if a.quick else a.frames
    info = c.machine_info()
    c.print_header("Depth codecs: size, error, CPU (16-bit millimetre depth, 640x480)", info)
    started = time.perf_counter()
    results = [r for content in a.contents for r in run(content, num_frames, a.only)]
    pngs = {r.content: r.extra["png_bytes_per_frame"] for r in results}
    print()
    print("PNG (zlib level 1) kB/frame: " + ", ".join(f"{k} {v / 1000:.1f}" for k, v in pngs.items()))
    print(c.table(HEADERS, [row(r) for r in results]))
    print(f"\nload at end {c.load_avg()}, {time.perf_counter() - started:.0f} s")
    c.write_json(NAME, {"info": info, "load_avg_end": c.load_avg(), "results": [r.__dict__ for r in results]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
