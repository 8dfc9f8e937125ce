"""Memory held by cached torchcodec decoders: what ``VideoDecoderCache``'s default size costs.

Each point runs in a fresh worker process (torch + torchcodec imported, one decoder built and
dropped first, so library start-up is not counted). The worker opens decoders on ``N``
distinct paths through one ``robovid.VideoDecoderCache(max_size=...)`` and decodes one frame
from each (a decoder that has decoded holds its codec's buffers, as in a training run), then
reports its RSS. The paths are hard links to one chunk, so each is its own cache entry (the
cache keys on the path) while the page cache holds the file once.

- ``N`` = 1, 25, 50, 100 with ``max_size=100`` (robovid's default): RSS growth per decoder;
- ``N`` = 300 with ``max_size=100``: the bound holds (RSS stays at the 100-decoder level);
- ``N`` = 300 with ``max_size=16``: what a smaller cache saves.

Two chunks: the 20-episode 640x480 AV1 chunk of ``bench_decode`` (6000 frames: the per-frame
index is part of what a decoder holds) and one 300-frame 1280x720 episode.

    .venv/bin/python -m benchmarks.bench_cache_memory
    .venv/bin/python -m benchmarks.bench_cache_memory --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "bench_cache_memory"
POINTS = ((1, 100), (25, 100), (50, 100), (100, 100), (300, 100), (300, 16))


def hd_episode() -> Path:
    """One 300-frame 1280x720 episode (robovid defaults), made once under ``out/cache``."""
    from robovid.encode import encode_frames
    from robovid.settings import EncoderSettings

    path = c.CACHE_DIR / "episodes-1280x720" / "episode-0.mp4"
    if not path.exists():
        frames_dir = c.episode_dirs(1, width=1280, height=720)[0]
        encode_frames(c.frame_paths(frames_dir), path, c.FPS, EncoderSettings())
    return path


def worker(source: str, count: int, max_size: int) -> None:
    import torch  # noqa: F401 -- loaded before the baseline, as in a training process
    from torchcodec.decoders import VideoDecoder

    import robovid

    VideoDecoder(source, seek_mode="approximate").get_frame_at(0)  # library start-up, then dropped
    with tempfile.TemporaryDirectory(dir=Path(source).parent) as links:
        paths = []
        for i in range(count):
            path = Path(links) / f"link-{i:04d}.mp4"
            os.link(source, path)
            paths.append(path)
        baseline = c.rss_mb()
        cache = robovid.VideoDecoderCache(max_size=max_size)
        for path in paths:
            with cache.borrow_decoder(path) as decoder:
                decoder.get_frame_at(0)
        held = c.rss_mb()
        c.worker_report(count=count, max_size=max_size, cached=len(cache), baseline_rss_mb=baseline, rss_mb=held)
        cache.clear()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only 1 and 25 decoders")
    parser.add_argument("--worker", nargs=3, metavar=("SOURCE", "COUNT", "MAX_SIZE"), help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.worker:
        worker(a.worker[0], int(a.worker[1]), int(a.worker[2]))
        return {}
    from benchmarks.bench_decode import CHUNK_EPISODES, chunk_path

    info = c.machine_info()
    c.print_header("bench_cache_memory: RSS held by cached torchcodec decoders", info)
    points = POINTS[:2] if a.quick else POINTS
    sources = {"640x480, 6000 frames": chunk_path(CHUNK_EPISODES), "1280x720, 300 frames": hd_episode()}
    results: dict[str, list[dict[str, Any]]] = {}
    for label, source in sources.items():
        results[label] = []
        for count, max_size in points:
            report = c.run_worker("benchmarks.bench_cache_memory", [str(source), str(count), str(max_size)])
            report["held_mb"] = report["rss_mb"] - report["baseline_rss_mb"]
            report["per_cached_decoder_mb"] = report["held_mb"] / report["cached"]
            results[label].append(report)
            print(f"{label}: {count} paths, max_size {max_size}: {report['held_mb']:.1f} MB held", flush=True)
    payload = {"benchmark": NAME, "machine": info, "load_avg_end": c.load_avg(), "results": results}
    payload["ratios"] = ratios(results)
    print_summary(payload)
    print(f"\nwrote {c.write_json(NAME, payload)}")
    return payload


def ratios(results: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, reports in results.items():
        by_point = {(r["count"], r["max_size"]): r for r in reports}
        if (300, 100) in by_point and (100, 100) in by_point:
            out[f"{label}: 300 paths over 100 paths, max_size 100 (bounded: ~1)"] = (
                by_point[(300, 100)]["held_mb"] / by_point[(100, 100)]["held_mb"]
            )
    return out


def print_summary(p: dict[str, Any]) -> None:
    rows = [
        [label, r["count"], r["max_size"], r["cached"], r["held_mb"], r["per_cached_decoder_mb"]]
        for label, reports in p["results"].items()
        for r in reports
    ]
    headers = ["chunk", "paths opened", "max_size", "decoders cached", "RSS held MB", "MB per cached decoder"]
    print()
    print(c.table(headers, rows))
    print(f"\nload {p['machine']['load_avg_start']} -> {p['load_avg_end']}")
    c.print_ratios(p["ratios"])


if __name__ == "__main__":
    main(sys.argv[1:])
