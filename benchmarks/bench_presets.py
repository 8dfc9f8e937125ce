"""The speed / size / quality trade-off of encoder presets (issue 5, section 3).

One 300-frame 640x480 natural-content episode, converted to yuv420p once and held in
memory, is encoded with g=2 crf=30 by each configuration through PyAV, one encoder
using both cores, each run in a fresh process (no torch): libsvtav1 presets 6, 8, 10,
12, 13 (SVT-AV1 may map some to others: its own log line is reported), and h264 / hevc
with robovid's settings (no B-frames, closed GOPs, x264/x265's default preset). Reported:
encode frames/s, encoder CPU ms per frame, bytes per frame, mean PSNR against the source
PNGs (whole frame, and the scene below the burnt-in index strip), the encoder's memory
(peak RSS while encoding minus RSS before it started, the peak
reset through ``/proc/self/clear_refs`` once the frames are in memory), and the latency of decoding 1 and 8 random
frames with a warm plain torchcodec decoder (``seek_mode="approximate"``, uint8, built once).

    .venv/bin/python -m benchmarks.bench_presets           # 3 repeats, median
    .venv/bin/python -m benchmarks.bench_presets --quick   # 1 repeat of 60 frames
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "bench_presets"
MODULE = "benchmarks.bench_presets"
G, CRF = 2, 30
CONFIGS = {
    "svt-6": ("libsvtav1", 6),
    "svt-8": ("libsvtav1", 8),
    "svt-10": ("libsvtav1", 10),
    "svt-12": ("libsvtav1", 12),
    "svt-13": ("libsvtav1", 13),
    "h264": ("h264", None),
    "hevc": ("hevc", None),
}


def yuv_frames_path(episode: Path, num_frames: int) -> Path:
    """The episode as yuv420p planes ``(N, H * 3 / 2, W)`` (robovid's own conversion), cached as .npy."""
    import av
    import numpy as np

    path = c.CACHE_DIR / "yuv" / f"{episode.parent.name}-{episode.name}-{num_frames}f.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        rgb = c.read_sources(c.frame_paths(episode)[:num_frames])
        planes = [av.VideoFrame.from_ndarray(x, format="rgb24").reformat(format="yuv420p").to_ndarray() for x in rgb]
        np.save(path, np.stack(planes))
    return path


# ---------------------------------------------------------------- worker (a fresh process per encode)


def worker_encode(yuv: Path, out: Path, config: str) -> dict[str, Any]:
    import av
    import numpy as np

    from robovid.settings import EncoderSettings

    vcodec, preset = CONFIGS[config]
    settings = EncoderSettings(vcodec=vcodec, g=G, crf=CRF, preset=preset)
    planes = np.load(yuv)
    frames = [av.VideoFrame.from_ndarray(p, format="yuv420p") for p in planes]
    del planes
    height, width = frames[0].height, frames[0].width
    rss_before = c.rss_mb()
    peak_was_reset = c.reset_peak_rss()  # the frames were built through a copy: forget that peak

    wall, cpu, _ = c.timed(
        lambda: c.encode_yuv_frames(out, settings.encoder_name, settings.codec_options(), frames, (width, height))
    )
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before_encode_mb": rss_before,
        "peak_rss_during_encode_mb": c.peak_rss_mb() if peak_was_reset else float("nan"),
        "codec_options": settings.codec_options(),
        "encoder": settings.encoder_name,
    }


# ---------------------------------------------------------------- parent


def decode_latency(video: Path, calls: int, seed: int) -> dict[str, Any]:
    """Median / p95 ms of ``get_frames_at`` for 1 and 8 random frames on a decoder built once."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(video), seek_mode="approximate")
    count = decoder.metadata.num_frames
    rng = random.Random(seed)
    decoder.get_frames_at([0])
    result: dict[str, Any] = {"decoder_codec": decoder.metadata.codec}
    for n in (1, 8):
        times = []
        for _ in range(calls):
            indices = [rng.randrange(count) for _ in range(n)]
            started = time.perf_counter()
            decoder.get_frames_at(indices)
            times.append(time.perf_counter() - started)
        result[f"decode_{n}_p50_ms"] = 1000 * c.percentile(times, 50)
        result[f"decode_{n}_p95_ms"] = 1000 * c.percentile(times, 95)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=c.EPISODE_FRAMES)
    parser.add_argument("--decode-calls", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 60 frames, 20 decode calls")
    parser.add_argument("--allow-realtime", action="store_true", help="as root, let SVT-AV1 use SCHED_FIFO")
    a = parser.parse_args(argv)
    if a.quick:
        a.repeats, a.frames, a.decode_calls = 1, 60, 20
    c.REALTIME["allowed"] = a.allow_realtime
    info = c.machine_info()
    c.print_header("bench_presets: 640x480 episode in memory, g=2 crf=30, one encoder", info)
    episode = c.episode_dirs(1)[0]
    yuv = yuv_frames_path(episode, a.frames)
    sources = c.read_sources(c.frame_paths(episode)[: a.frames])
    work = c.OUT_DIR / "presets"
    work.mkdir(parents=True, exist_ok=True)
    keys = list(CONFIGS)
    runs: list[dict[str, Any]] = []
    for repeat in range(a.repeats):
        order = keys[repeat % len(keys) :] + keys[: repeat % len(keys)]
        print(f"repeat {repeat + 1}/{a.repeats}, order {order}", flush=True)
        results = {}
        for key in order:
            report = c.run_worker(MODULE, ["encode", "--yuv", str(yuv), "--out", str(work / f"{key}.mp4"), key])
            report["bytes"] = (work / f"{key}.mp4").stat().st_size
            results[key] = report
        runs.append({"load_avg": c.load_avg(), "results": results})
    final: dict[str, dict[str, Any]] = {}
    for key in keys:
        video = work / f"{key}.mp4"
        quality = c.mean_psnr(video, sources, episode=0)
        if quality.frames != a.frames:
            raise RuntimeError(f"{key}: {quality.frames} frames, not {a.frames}")
        final[key] = {
            "psnr_db": quality.psnr_db,
            "scene_psnr_db": quality.scene_psnr_db,
            "strip_psnr_db": quality.strip_psnr_db,
            "unreadable_index_frames": quality.unreadable_index_frames,
        }
        final[key] |= decode_latency(video, a.decode_calls, seed=len(key))
        video.unlink()
    payload = {
        "benchmark": NAME,
        "machine": info,
        "load_avg_end": c.load_avg(),
        "frames": a.frames,
        "repeats": a.repeats,
        "settings": {"g": G, "crf": CRF, "fps": c.FPS},
        "runs": runs,
        "table": summarize(runs, final, keys, a.frames),
    }
    print_summary(payload)
    print(f"\nwrote {c.write_json(NAME, payload)}")
    return payload


def summarize(
    runs: list[dict[str, Any]], final: dict[str, dict[str, Any]], keys: list[str], frames: int
) -> dict[str, dict[str, Any]]:
    table = {}
    for key in keys:
        rows = [run["results"][key] for run in runs]
        wall = c.median([r["wall_s"] for r in rows])
        cpu = c.median([r["cpu_s"] for r in rows])
        peak = c.median([r["process"]["peak_rss_mb"] for r in rows])
        encoder_mb = c.median([r["peak_rss_during_encode_mb"] - r["rss_before_encode_mb"] for r in rows])
        svt = sorted({line for r in rows for line in r["svt_log"]})
        table[key] = {
            "encoder": rows[0]["encoder"],
            "codec_options": rows[0]["codec_options"],
            "frames_per_s": frames / wall,
            "cpu_ms_per_frame": 1000 * cpu / frames,
            "bytes_per_frame": c.median([r["bytes"] for r in rows]) / frames,
            "peak_rss_mb": peak,
            "encoder_rss_mb": encoder_mb,
            "svt_preset_used": _svt_preset(svt),
            "svt_log": svt,
            **final[key],
        }
    base = table["svt-12"]
    for row in table.values():
        row["cpu_vs_svt12"] = row["cpu_ms_per_frame"] / base["cpu_ms_per_frame"]
        row["bytes_vs_svt12"] = row["bytes_per_frame"] / base["bytes_per_frame"]
    return table


def _svt_preset(lines: list[str]) -> str:
    for line in lines:
        if "preset / tune" in line:
            return line.rsplit(":", 1)[1].split("/")[0].strip()
    return "-"


def print_summary(p: dict[str, Any]) -> None:
    rows = []
    for key, r in p["table"].items():
        rows.append(
            [
                key,
                r["svt_preset_used"],
                r["frames_per_s"],
                r["cpu_ms_per_frame"],
                r["cpu_vs_svt12"],
                r["bytes_per_frame"] / 1000,
                r["bytes_vs_svt12"],
                r["psnr_db"],
                r["scene_psnr_db"],
                r["strip_psnr_db"],
                r["unreadable_index_frames"],
                r["decode_1_p50_ms"],
                r["decode_8_p50_ms"],
                r["encoder_rss_mb"],
            ]
        )
    headers = ["config", "SVT preset used", "encode frames/s", "CPU ms/frame", "CPU vs svt-12", "kB/frame"]
    headers += ["size vs svt-12", "PSNR dB", "scene PSNR dB", "strip PSNR dB", "unreadable index frames"]
    headers += ["decode 1 ms", "decode 8 ms", "encoder MB"]
    print()
    print(c.table(headers, rows))
    print(
        f"\nmedians of {p['repeats']} repeats, {p['frames']} frames; decode: medians of warm calls; "
        f"load {p['machine']['load_avg_start']} -> {p['load_avg_end']}"
    )


def run_worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--yuv", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("config", choices=list(CONFIGS))
    a = parser.parse_args(argv)
    c.worker_report(**worker_encode(a.yuv, a.out, a.config))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        run_worker_main(sys.argv[1:])
    else:
        main()
