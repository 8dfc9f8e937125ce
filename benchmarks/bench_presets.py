"""Encoder presets side by side: fidelity (stale frames), speed, size and quality (issues 5 and 8).

Every libsvtav1 preset 0-13, libsvtav1 without a preset (what LeRobot's reference does: SVT-AV1
then picks its own default), h264 and hevc with robovid's settings (no B-frames, closed GOPs,
x264/x265's default preset), all at g=2 crf=30 (and h264 at crf 26 and 23, nearer AV1's quality),
each run in a fresh process (no torch):

- **fidelity**: the clips of :mod:`robovid.fidelity` (blinking 8/16/32 px patches at every
  superblock position at 640x480 and 1280x720, the bottom fiducial strip, moving objects, pans,
  a small moving pattern) are encoded and every decoded frame is judged region by region; a
  frame is *stale* when some region is closer to the previous source frame than to its own.
  150 frames per clip (24 for the small pattern clip); presets below ``--slow-below`` (0 and 1:
  0.9-3.5 s of CPU per 640x480 frame) use ``--slow-suite-frames`` frames per clip instead;
- **speed, size, quality**: one 300-frame 640x480 natural-content episode, converted to yuv420p
  once and held in memory, encoded with robovid's thread setting (``lp=1`` for libsvtav1); encoder
  CPU ms per frame, bytes per frame, mean PSNR against the source PNGs (whole frame, and the scene
  below the burnt-in index strip), the encoder's memory, and the latency of decoding 1 and 8 random
  frames with a warm plain torchcodec decoder. Presets below ``--slow-below`` use ``--slow-frames``.

The defaults are chosen from the table (``choose_default``): among the configs with 0 stale frames on
the whole suite and a scene PSNR within 0.2 dB of the reference's own default encode (or above), the
least encoder CPU per frame; for the library among plain libsvtav1 presets at crf 30, for the service
among every codec, crf and option measured. ``--encoder-threads 1`` measures with the service's threads.

    .venv/bin/python -m benchmarks.bench_presets                      # everything (hours on 2 busy cores)
    .venv/bin/python -m benchmarks.bench_presets --configs svt-6,svt-8 --repeats 1 --tag -68
    .venv/bin/python -m benchmarks.bench_presets --quick              # 1 repeat, 60 frames, short suite
    .venv/bin/python -m benchmarks.bench_presets --configs svt-none,svt-6 --sweep h264:veryfast:28,26 \
        --encoder-threads 1 --tag -sweep                              # a crf sweep at the service's threads
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "bench_presets"
MODULE = "benchmarks.bench_presets"
G, CRF = 2, 30
REFERENCE = "svt-none"
Config = tuple[str, int | str | None, int, str]
"""vcodec, preset (``"none"``: leave it to the encoder, as the reference does), crf, extra ``svtav1-params``."""
CONFIGS: dict[str, Config] = {
    **{f"svt-{p}": ("libsvtav1", p, CRF, "") for p in range(14)},
    REFERENCE: ("libsvtav1", "none", CRF, ""),
    "h264": ("h264", None, CRF, ""),
    "hevc": ("hevc", None, CRF, ""),
    "h264-crf26": ("h264", None, 26, ""),  # h264 at about AV1's quality: a CPU-cheap faithful alternative?
    "h264-crf23": ("h264", None, 23, ""),
}
"""The default list. More by name (see ``config_of``): ``h264-veryfast-crf24``, ``hevc-fast-crf26``,
``svt-8-crf28``, ``svt-8-vboost`` (SVT-AV1's ``enable-variance-boost=1``, which kept preset 8's pan edge
fresh in the fidelity work); ``--sweep h264,hevc:medium,fast,veryfast:30,28,26,24`` adds a grid."""
SVT_OPTIONS = {"vboost": "enable-variance-boost=1"}
_NAME = re.compile(r"^(?P<codec>svt|h264|hevc)-(?P<preset>none|\d+|[a-z]+?)(?:-crf(?P<crf>\d+))?(?:-(?P<opt>vboost))?$")


def config_of(key: str) -> Config:
    """A config by name: one of CONFIGS, or ``{svt|h264|hevc}-{preset}[-crf{N}][-vboost]``."""
    if key in CONFIGS:
        return CONFIGS[key]
    match = _NAME.match(key)
    if match is None:
        raise ValueError(f"unknown config {key!r}: use one of {', '.join(CONFIGS)} or e.g. h264-veryfast-crf24")
    codec, preset_name, crf, opt = match["codec"], match["preset"], match["crf"], match["opt"]
    vcodec = "libsvtav1" if codec == "svt" else codec
    preset: int | str | None = int(preset_name) if preset_name.isdigit() else preset_name
    if opt and vcodec != "libsvtav1":
        raise ValueError(f"{key!r}: -{opt} is an SVT-AV1 option")
    return vcodec, preset, int(crf) if crf else CRF, SVT_OPTIONS.get(opt or "", "")


def sweep(spec: str) -> list[str]:
    """``CODECS:PRESETS:CRFS`` (each comma-separated) -> config names, e.g. ``h264:fast:28,26``."""
    codecs, presets, crfs = (part.split(",") for part in spec.split(":"))
    return [f"{codec}-{preset}-crf{crf}" for codec in codecs for preset in presets for crf in crfs]


SCENE_PSNR_MARGIN_DB = 0.2


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


# ---------------------------------------------------------------- workers (a fresh process each)


def encoder_of(config: str, threads: int | None = None) -> tuple[str, dict[str, str]]:
    """The FFmpeg encoder name and options of a config (robovid's settings; no preset for the reference).

    ``threads`` is ``EncoderSettings.threads`` (None: the library's choice, ``lp=1`` for libsvtav1 and the
    encoder's own for x264/x265; the service runs every encoder with 1, ``ROBOVID_ENCODER_THREADS``).
    """
    from robovid.settings import EncoderSettings

    vcodec, preset, crf, svt_params = config_of(config)
    settings = EncoderSettings(
        vcodec=vcodec, g=G, crf=crf, preset=None if preset == "none" else preset, threads=threads
    )
    options = settings.codec_options()
    if preset == "none":
        del options["preset"]
    if svt_params:
        options["svtav1-params"] = ":".join(filter(None, [options.get("svtav1-params", ""), svt_params]))
    return settings.encoder_name, options


def worker_encode(yuv: Path, out: Path, config: str, threads: int | None) -> dict[str, Any]:
    import av
    import numpy as np

    encoder, options = encoder_of(config, threads)
    planes = np.load(yuv)
    frames = [av.VideoFrame.from_ndarray(p, format="yuv420p") for p in planes]
    del planes
    height, width = frames[0].height, frames[0].width
    rss_before = c.rss_mb()
    peak_was_reset = c.reset_peak_rss()  # the frames were built through a copy: forget that peak

    wall, cpu, _ = c.timed(lambda: c.encode_yuv_frames(out, encoder, options, frames, (width, height)))
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before_encode_mb": rss_before,
        "peak_rss_during_encode_mb": c.peak_rss_mb() if peak_was_reset else float("nan"),
        "codec_options": options,
        "encoder": encoder,
    }


def worker_fidelity(
    config: str, frames: int, hd_frames: int, pattern_frames: int, work: Path, threads: int | None
) -> dict[str, Any]:
    """Encode every fidelity clip with ``config`` and judge every decoded frame."""
    import av

    from robovid import fidelity

    encoder, options = encoder_of(config, threads)
    clips = {}
    for clip in fidelity.suite(frames, hd_frames, pattern_frames):
        video = work / f"fidelity-{config}-{clip.name}.mp4"
        rgb = (av.VideoFrame.from_ndarray(clip.frame(i), format="rgb24") for i in range(clip.num_frames))
        yuv = (frame.reformat(format="yuv420p") for frame in rgb)  # streamed: a 720p clip never sits in memory
        c.encode_yuv_frames(video, encoder, options, yuv, (clip.width, clip.height))
        report = fidelity.analyse_video(clip, video)
        clips[clip.name] = {
            "frames": clip.num_frames,
            "stale": report.stale_count,
            "stale_frames": report.stale_frames,
            "stale_by_kind": report.stale_by_kind(),
            "bytes": video.stat().st_size,
            "details": report.describe() if report.stale_count else "",
        }
        video.unlink()
    return {"clips": clips, "stale_frames": sum(v["stale"] for v in clips.values())}


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


def _is_slow(key: str, below: int) -> bool:
    preset = config_of(key)[1]
    return isinstance(preset, int) and preset < below


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS) + ", ...")
    parser.add_argument("--sweep", action="append", default=[], help="also CODECS:PRESETS:CRFS, e.g. h264:fast:28,26")
    parser.add_argument(
        "--encoder-threads", type=int, default=None, help="EncoderSettings.threads (the service: 1; default: library)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=c.EPISODE_FRAMES)
    parser.add_argument("--suite-frames", type=int, default=150, help="frames per fidelity clip")
    parser.add_argument("--slow-below", type=int, default=2, help="libsvtav1 presets below this are 'slow'")
    parser.add_argument("--slow-frames", type=int, default=60, help="episode frames for slow presets (1 repeat)")
    parser.add_argument("--slow-suite-frames", type=int, default=12, help="frames per fidelity clip, slow presets")
    parser.add_argument("--tag", default="", help="suffix of the JSON file name")
    parser.add_argument("--decode-calls", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 60 frames, 30-frame suite, 20 decode calls")
    parser.add_argument("--allow-realtime", action="store_true", help="as root, let SVT-AV1 use SCHED_FIFO")
    a = parser.parse_args(argv)
    if a.quick:
        a.repeats, a.frames, a.suite_frames, a.decode_calls = 1, 60, 30, 20
    keys = list(dict.fromkeys([k for k in a.configs.split(",") if k] + [k for s in a.sweep for k in sweep(s)]))
    for key in keys:
        try:
            config_of(key)
        except ValueError as error:
            parser.error(str(error))
    threads = [] if a.encoder_threads is None else ["--threads", str(a.encoder_threads)]
    c.REALTIME["allowed"] = a.allow_realtime
    info = c.machine_info()
    c.print_header("bench_presets: fidelity suite + 640x480 episode in memory, g=2 crf=30, one encoder", info)
    episode = c.episode_dirs(1)[0]
    sources = c.read_sources(c.frame_paths(episode)[: a.frames])
    work = c.OUT_DIR / "presets"
    work.mkdir(parents=True, exist_ok=True)
    frames_of = {k: min(a.frames, a.slow_frames) if _is_slow(k, a.slow_below) else a.frames for k in keys}
    yuv_of = {n: yuv_frames_path(episode, n) for n in set(frames_of.values())}
    runs: list[dict[str, Any]] = []
    for repeat in range(a.repeats):
        order = keys[repeat % len(keys) :] + keys[: repeat % len(keys)]
        print(f"repeat {repeat + 1}/{a.repeats}", flush=True)
        results = {}
        for key in order:
            if repeat and _is_slow(key, a.slow_below):
                continue
            out = work / f"{key}.mp4"
            args = ["encode", "--yuv", str(yuv_of[frames_of[key]]), "--out", str(out), *threads, key]
            report = c.run_worker(MODULE, args)
            report["bytes"] = out.stat().st_size
            report["load_avg"] = c.load_avg()
            results[key] = report
            print(f"  {key}: {1000 * report['cpu_s'] / frames_of[key]:.1f} CPU ms/frame", flush=True)
        runs.append({"load_avg": c.load_avg(), "results": results})
    c.write_json(f"{NAME}{a.tag}-speed", {"machine": info, "frames": frames_of, "runs": runs})  # kept if the rest fails
    final: dict[str, dict[str, Any]] = {}
    for key in keys:
        final[key] = quality_of(work / f"{key}.mp4", sources[: frames_of[key]], a.decode_calls, key)
        suite_frames = a.slow_suite_frames if _is_slow(key, a.slow_below) else a.suite_frames
        args = [str(suite_frames), str(suite_frames), "24", str(work)]
        fidelity = c.run_worker(MODULE, ["fidelity", *threads, key, *args], timeout_s=6 * 3600)
        final[key] |= {"suite_frames": suite_frames, "stale_frames": fidelity["stale_frames"], "fidelity": fidelity}
        print(f"  {key}: {fidelity['stale_frames']} stale frames on the suite ({suite_frames} per clip)", flush=True)
    table = summarize(runs, final, keys, frames_of)
    payload = {
        "benchmark": NAME,
        "machine": info,
        "load_avg_end": c.load_avg(),
        "frames": frames_of,
        "repeats": a.repeats,
        "settings": {"g": G, "crf": CRF, "fps": c.FPS, "encoder_threads": a.encoder_threads},
        "runs": runs,
        "table": table,
        "choice": choose_default(table),
    }
    print_summary(payload)
    print(f"\nwrote {c.write_json(NAME + a.tag, payload)}")
    return payload


def quality_of(video: Path, sources: list[Any], decode_calls: int, key: str) -> dict[str, Any]:
    quality = c.mean_psnr(video, sources, episode=0)
    if quality.frames != len(sources):
        raise RuntimeError(f"{key}: {quality.frames} frames, not {len(sources)}")
    result = {
        "psnr_db": quality.psnr_db,
        "scene_psnr_db": quality.scene_psnr_db,
        "strip_psnr_db": quality.strip_psnr_db,
        "unreadable_index_frames": quality.unreadable_index_frames,
    }
    result |= decode_latency(video, decode_calls, seed=len(key))
    video.unlink()
    return result


def summarize(
    runs: list[dict[str, Any]], final: dict[str, dict[str, Any]], keys: list[str], frames_of: dict[str, int]
) -> dict[str, dict[str, Any]]:
    table = {}
    for key in keys:
        rows = [run["results"][key] for run in runs if key in run["results"]]
        frames = frames_of[key]
        svt = sorted({line for r in rows for line in r["svt_log"]})
        table[key] = {
            "encoder": rows[0]["encoder"],
            "codec_options": rows[0]["codec_options"],
            "episode_frames": frames,
            "repeats": len(rows),
            "frames_per_s": frames / c.median([r["wall_s"] for r in rows]),
            "cpu_ms_per_frame": 1000 * c.median([r["cpu_s"] for r in rows]) / frames,
            "bytes_per_frame": c.median([r["bytes"] for r in rows]) / frames,
            "peak_rss_mb": c.median([r["process"]["peak_rss_mb"] for r in rows]),
            "encoder_rss_mb": c.median([r["peak_rss_during_encode_mb"] - r["rss_before_encode_mb"] for r in rows]),
            "svt_preset_used": _svt_preset(svt),
            "svt_log": svt,
            **final[key],
        }
    base = table.get(REFERENCE)
    for row in table.values():
        if base is not None:
            row["cpu_vs_reference"] = row["cpu_ms_per_frame"] / base["cpu_ms_per_frame"]
            row["bytes_vs_reference"] = row["bytes_per_frame"] / base["bytes_per_frame"]
            row["scene_psnr_vs_reference_db"] = row["scene_psnr_db"] - base["scene_psnr_db"]
        else:
            row["cpu_vs_reference"] = row["bytes_vs_reference"] = row["scene_psnr_vs_reference_db"] = float("nan")
    return table


def faithful_configs(table: dict[str, dict[str, Any]]) -> list[str]:
    """Configs with 0 stale frames on the suite and scene PSNR within the margin of (or above) the reference."""
    return [
        key
        for key, row in table.items()
        if key != REFERENCE and row["stale_frames"] == 0 and row["scene_psnr_vs_reference_db"] >= -SCENE_PSNR_MARGIN_DB
    ]


def choose_default(table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The defaults the table picks, each the least encoder CPU per frame among the faithful configs.

    ``library``: plain libsvtav1 (the reference's codec and crf, no extra option), ``encode_video_frames``'s
    default; ``service``: any codec, robovid-watch's default (its bytes are in the table beside AV1's).
    """
    faithful = faithful_configs(table)
    plain_svt = [k for k in faithful if config_of(k)[0] == "libsvtav1" and config_of(k)[2:] == (CRF, "")]
    rule = f"0 stale frames on the suite and scene PSNR within {SCENE_PSNR_MARGIN_DB} dB of the reference's or above"
    choice: dict[str, Any] = {"faithful": faithful, "rule": rule}
    for role, candidates in (("library", plain_svt), ("service", faithful)):
        best = min(candidates, key=lambda k: table[k]["cpu_ms_per_frame"]) if candidates else None
        choice[role] = {
            "config": best,
            "reason": f"the least CPU ms per frame of {', '.join(candidates)}" if best else "none met the rule",
        }
    return choice


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
                f"{r['stale_frames']} ({r['suite_frames']})",
                r["cpu_ms_per_frame"],
                r["cpu_vs_reference"],
                r["frames_per_s"],
                r["bytes_per_frame"] / 1000,
                r["bytes_vs_reference"],
                r["psnr_db"],
                r["scene_psnr_db"],
                r["scene_psnr_vs_reference_db"],
                r["unreadable_index_frames"],
                r["decode_1_p50_ms"],
                r["encoder_rss_mb"],
                f"{r['episode_frames']} x {r['repeats']}",
            ]
        )
    headers = ["config", "SVT preset used", "stale frames (frames per clip)", "CPU ms/frame", "CPU vs reference"]
    headers += ["encode frames/s", "kB/frame", "size vs reference", "PSNR dB", "scene PSNR dB"]
    headers += [
        "scene PSNR vs reference dB",
        "unreadable index frames",
        "decode 1 ms",
        "encoder MB",
        "frames x repeats",
    ]
    print()
    print(c.table(headers, rows))
    print("\nstale frames per clip:")
    clip_names = list(next(iter(p["table"].values()))["fidelity"]["clips"])
    clip_rows = [[k, *(r["fidelity"]["clips"][n]["stale"] for n in clip_names)] for k, r in p["table"].items()]
    print(c.table(["config", *clip_names], clip_rows))
    print(f"\nchoice: {p['choice']}")
    print(
        f"\nmedians of the repeats; decode: medians of warm calls; "
        f"load {p['machine']['load_avg_start']} -> {p['load_avg_end']}"
    )


def run_worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--threads", type=int, default=None)
    if argv[1] == "fidelity":
        parser.add_argument("config")
        parser.add_argument("frames", type=int)
        parser.add_argument("hd_frames", type=int)
        parser.add_argument("pattern_frames", type=int)
        parser.add_argument("work", type=Path)
        f = parser.parse_args(argv)
        report = worker_fidelity(f.config, f.frames, f.hd_frames, f.pattern_frames, f.work, f.threads)
        c.worker_report(**report)
        return
    parser.add_argument("--yuv", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("config")
    a = parser.parse_args(argv)
    c.worker_report(**worker_encode(a.yuv, a.out, a.config, a.threads))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        run_worker_main(sys.argv[1:])
    else:
        main()
