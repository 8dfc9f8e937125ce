"""Random-access decode latency on a real chunk: robovid's backends against plain torchcodec.

The chunk holds 20 appended 300-frame 640x480 AV1 episodes (6000 frames, g=2, made
once with ``robovid.append_video``). Each call asks for 1, 2 or 8 timestamps drawn
uniformly over the whole chunk (frame ``i`` at ``i / fps``), tolerance 1e-4 s. Every
variant gets the same timestamp sets, interleaved call by call in a fresh random order
each time, so load changes and what ran just before hit all of them alike.

- ``robovid torchcodec, warm``: ``robovid.decode_video_frames(..., backend="torchcodec")``;
  its module-wide decoder cache already holds the file's decoder (a first call made it).
- ``robovid torchcodec, warm, return_uint8=True``: the same call returning torchcodec's uint8
  frames unconverted; compared with ``plain torchcodec, warm`` (uint8 too), call by call.
- ``robovid torchcodec, cold``: ``robovid.decode_video_frames_torchcodec(...,
  decoder_cache=VideoDecoderCache())``, a new empty cache per call, so every call opens the
  file and builds its decoder (the same code path as ``decode_video_frames``).
- ``robovid pyav``: ``robovid.decode_video_frames(..., backend="pyav")``. The PyAV backend
  keeps no decoders: every call opens the file, so cold and warm are the same thing.
- ``plain torchcodec, warm``: ``VideoDecoder(path, seek_mode="approximate")`` built once,
  then ``get_frames_at(indices)`` per call (uint8, what the target compares against);
  ``+ float`` adds robovid's conversion to float32 in [0, 1] so the two costs can be told apart.
- ``plain torchcodec, cold``: the ``VideoDecoder`` built inside every call.
- ``..., torch 1 thread``: the same calls in a second phase run with ``torch.set_num_threads(1)``,
  as in a ``DataLoader`` worker (torch's default here is 2 intra-op threads, whose float
  conversion slows down badly when other processes hold the cores). Its own phase, because
  switching the thread count between calls makes the next multi-threaded call pay to
  restart the pool (an earlier version did, and charged that to whichever variant came next).

"Cold" here means a cold decoder cache, not a cold page cache: the chunk is in memory
(dropping the page cache would slow everyone else on this shared machine).

    .venv/bin/python -m benchmarks.bench_decode            # 150 calls per variant and size
    .venv/bin/python -m benchmarks.bench_decode --quick
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "bench_decode"
SIZES = (1, 2, 8)
TOLERANCE_S = 1e-4
CHUNK_EPISODES = 20
ONE_THREAD = "_1thread"
ONE_THREAD_KEYS = ["robovid_torchcodec_warm_1thread", "plain_torchcodec_warm_float_1thread"]


def chunk_path(episodes: int) -> Path:
    """A chunk of ``episodes`` appended episodes, built once under ``out/cache``."""
    from robovid.append import append_video

    path = c.CACHE_DIR / "chunks" / f"chunk-{episodes}ep.mp4"
    if path.exists():
        return path
    videos = c.episode_videos(3)
    building = path.with_name(path.stem + ".building.mp4")
    building.unlink(missing_ok=True)
    print(f"building {path.name} ...", flush=True)
    for n in range(episodes):
        append_video(building, videos[n % len(videos)])
    building.rename(path)
    return path


def variants(path: Path) -> dict[str, Callable[[list[float]], Any]]:
    """Each variant: a call taking query timestamps and returning the frames."""
    import torch
    from torchcodec.decoders import VideoDecoder

    import robovid

    warm_plain = VideoDecoder(str(path), seek_mode="approximate")
    fps = warm_plain.metadata.average_fps
    count = warm_plain.metadata.num_frames

    def indices(ts: list[float]) -> list[int]:
        return [min(round(t * fps), count - 1) for t in ts]

    def plain_cold(ts: list[float]) -> Any:
        return VideoDecoder(str(path), seek_mode="approximate").get_frames_at(indices(ts)).data

    robovid_warm = lambda ts: robovid.decode_video_frames(path, ts, TOLERANCE_S, "torchcodec")  # noqa: E731
    plain_float = lambda ts: warm_plain.get_frames_at(indices(ts)).data.to(torch.float32) / 255  # noqa: E731
    return {
        "robovid_torchcodec_warm_uint8": lambda ts: robovid.decode_video_frames(
            path, ts, TOLERANCE_S, "torchcodec", return_uint8=True
        ),
        "robovid_torchcodec_warm_1thread": robovid_warm,  # run in the one-thread phase
        "plain_torchcodec_warm_float_1thread": plain_float,
        "robovid_torchcodec_warm": robovid_warm,
        "robovid_torchcodec_cold": lambda ts: robovid.decode_video_frames_torchcodec(
            path, ts, TOLERANCE_S, decoder_cache=robovid.VideoDecoderCache()
        ),
        "robovid_pyav": lambda ts: robovid.decode_video_frames(path, ts, TOLERANCE_S, "pyav"),
        "plain_torchcodec_warm": lambda ts: warm_plain.get_frames_at(indices(ts)).data,
        "plain_torchcodec_warm_float": lambda ts: warm_plain.get_frames_at(indices(ts)).data.to(torch.float32) / 255,
        "plain_torchcodec_cold": plain_cold,
    }


LABELS = {
    "robovid_torchcodec_warm": "robovid torchcodec, warm cache",
    "robovid_torchcodec_warm_uint8": "robovid torchcodec, warm cache, return_uint8=True",
    "robovid_torchcodec_warm_1thread": "robovid torchcodec, warm cache, torch 1 thread",
    "robovid_torchcodec_cold": "robovid torchcodec, cold cache",
    "robovid_pyav": "robovid pyav (no cache: cold = warm)",
    "plain_torchcodec_warm": "plain torchcodec VideoDecoder, built once",
    "plain_torchcodec_warm_float": "plain torchcodec, built once, + float32/255",
    "plain_torchcodec_warm_float_1thread": "plain torchcodec, built once, + float32/255, torch 1 thread",
    "plain_torchcodec_cold": "plain torchcodec VideoDecoder, built per call",
}


def check_same_frames(calls: dict[str, Callable[[list[float]], Any]], ts: list[float]) -> dict[str, float]:
    """Largest difference (in [0, 1] units) of each variant's frames from plain torchcodec's, for one query."""
    import torch

    def unit(frames: Any) -> Any:
        frames = torch.as_tensor(frames)
        return frames.to(torch.float32) / 255 if frames.dtype == torch.uint8 else frames

    reference = unit(calls["plain_torchcodec_warm"](ts))
    return {key: float((unit(fn(ts)) - reference).abs().max()) for key, fn in calls.items()}


def bookkeeping_costs(path: Path, calls: int) -> dict[str, float]:
    """µs (median) of what robovid's torchcodec call adds around the decode: cache borrow (with its change-check stat), request check."""
    from robovid._decode_common import check_request
    from robovid._decode_torchcodec import default_decoder_cache

    def borrow() -> None:
        with default_decoder_cache().borrow_decoder(path):
            pass

    ways = {"cache_borrow_and_stat": borrow, "request_check": lambda: check_request([1.0], TOLERANCE_S, path)}
    times: dict[str, list[float]] = {key: [] for key in ways}
    for _ in range(calls * 10):
        for key, fn in ways.items():
            started = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - started)
    return {f"{key}_us": 1e6 * c.median(t) for key, t in times.items()}


def conversion_costs(path: Path, calls: int) -> dict[str, float]:
    """ms (median) to turn 8 decoded uint8 frames into float32 in [0, 1]: robovid's torch line vs one numpy pass."""
    import numpy as np
    import torch
    from torchcodec.decoders import VideoDecoder

    batch = VideoDecoder(str(path), seek_mode="approximate").get_frames_at(list(range(8))).data
    ways = {
        "torch_to_float32_div_255": lambda: batch.to(torch.float32, memory_format=torch.contiguous_format).div_(255),
        "numpy_multiply_float32": lambda: torch.from_numpy(
            np.multiply(batch.numpy(), np.float32(1 / 255), dtype=np.float32)
        ),
    }
    times: dict[str, list[float]] = {key: [] for key in ways}
    for _ in range(calls):
        for key, fn in ways.items():
            started = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - started)
    return {f"{key}_ms": 1000 * c.median(t) for key, t in times.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=150, help="calls per variant and batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 calls per variant and size")
    a = parser.parse_args(argv)
    if a.quick:
        a.calls = 20
    info = c.machine_info()
    c.print_header(f"bench_decode: random timestamps on a {CHUNK_EPISODES}-episode AV1 chunk", info)
    path = chunk_path(CHUNK_EPISODES)
    import torch

    calls = variants(path)
    num_frames = CHUNK_EPISODES * c.EPISODE_FRAMES
    rng = random.Random(a.seed)
    for fn in calls.values():  # warm-up: imports, the warm caches, the page cache
        fn([0.0])
    differences = check_same_frames(calls, [rng.randrange(num_frames) / c.FPS for _ in range(8)])
    samples: dict[int, dict[str, list[float]]] = {n: {key: [] for key in calls} for n in SIZES}
    threads = torch.get_num_threads()
    for phase_threads, keys in ((threads, [k for k in calls if not k.endswith(ONE_THREAD)]), (1, ONE_THREAD_KEYS)):
        torch.set_num_threads(phase_threads)
        for _trial in range(a.calls):
            for n in SIZES:
                ts = [rng.randrange(num_frames) / c.FPS for _ in range(n)]
                for key in rng.sample(keys, len(keys)):
                    started = time.perf_counter()
                    calls[key](ts)
                    samples[n][key].append(time.perf_counter() - started)
    torch.set_num_threads(threads)
    payload = {
        "benchmark": NAME,
        "machine": info,
        "load_avg_end": c.load_avg(),
        "chunk": {"path": str(path), "bytes": path.stat().st_size, "frames": num_frames},
        "torch_threads": torch.get_num_threads(),
        "calls": a.calls,
        "tolerance_s": TOLERANCE_S,
        "max_abs_difference_vs_plain": differences,
        "samples_s": {str(n): s for n, s in samples.items()},
        "float_conversion_8_frames": conversion_costs(path, a.calls),
        "robovid_bookkeeping": bookkeeping_costs(path, a.calls),
        **summarize(samples),
    }
    bookkeeping_s = sum(payload["robovid_bookkeeping"].values()) / 1e6
    payload["ratios"]["robovid_bookkeeping_over_plain_warm_n1_p50"] = (
        bookkeeping_s / payload["latency"]["1"]["plain_torchcodec_warm"]["p50_ms"] * 1000
    )
    print_summary(payload)
    print(f"\nwrote {c.write_json(NAME, payload)}")
    return payload


def summarize(samples: dict[int, dict[str, list[float]]]) -> dict[str, Any]:
    stats = {
        str(n): {
            key: {"p50_ms": 1000 * c.percentile(v, 50), "p95_ms": 1000 * c.percentile(v, 95)} for key, v in s.items()
        }
        for n, s in samples.items()
    }
    ratios: dict[str, float] = {}
    for n, s in samples.items():
        for base in ("plain_torchcodec_warm", "plain_torchcodec_warm_float"):
            paired = [r / b for r, b in zip(s["robovid_torchcodec_warm"], s[base], strict=True)]
            ratios[f"robovid_warm_over_{base}_n{n}_paired_median"] = c.median(paired)
        ratios[f"robovid_warm_uint8_over_plain_torchcodec_warm_n{n}_paired_median"] = c.median(
            [r / b for r, b in zip(s["robovid_torchcodec_warm_uint8"], s["plain_torchcodec_warm"], strict=True)]
        )
        ratios[f"robovid_warm_1thread_over_plain_float_1thread_n{n}_paired_median"] = c.median(
            [
                r / b
                for r, b in zip(
                    s["robovid_torchcodec_warm_1thread"], s["plain_torchcodec_warm_float_1thread"], strict=True
                )
            ]
        )
        ratios[f"robovid_cold_over_plain_cold_n{n}_paired_median"] = c.median(
            [r / b for r, b in zip(s["robovid_torchcodec_cold"], s["plain_torchcodec_cold"], strict=True)]
        )
    targets = [
        c.target(
            f"robovid torchcodec warm / plain torchcodec warm, {n} frame(s) (median of paired calls) <= 1.0",
            ratios[f"robovid_warm_over_plain_torchcodec_warm_n{n}_paired_median"],
            1.0,
        )
        for n in samples
    ] + [
        c.target(
            f"robovid return_uint8=True / plain torchcodec uint8, {n} frame(s) (median of paired calls) <= 1.0",
            ratios[f"robovid_warm_uint8_over_plain_torchcodec_warm_n{n}_paired_median"],
            1.0,
        )
        for n in samples
    ]
    return {"latency": stats, "ratios": ratios, "targets": targets}


def print_summary(p: dict[str, Any]) -> None:
    rows = []
    for key, label in LABELS.items():
        row: list[Any] = [label]
        for n in SIZES:
            s = p["latency"][str(n)][key]
            row += [s["p50_ms"], s["p95_ms"]]
        rows.append(row)
    headers = ["variant"] + [f"{n} ts {q} ms" for n in SIZES for q in ("p50", "p95")]
    print()
    print(c.table(headers, rows))
    print(
        f"\n{p['calls']} calls per cell; load {p['machine']['load_avg_start']} -> {p['load_avg_end']}; "
        f"largest pixel difference from plain torchcodec: {max(p['max_abs_difference_vs_plain'].values()):.3g}"
    )
    c.print_targets(p["targets"])
    c.print_ratios(p["ratios"])
    print()
    print(c.table(["8 frames uint8 -> float32 [0, 1]", "median ms"], list(p["float_conversion_8_frames"].items())))
    print()
    print(c.table(["robovid's work around one call", "median µs"], list(p["robovid_bookkeeping"].items())))


if __name__ == "__main__":
    main()
