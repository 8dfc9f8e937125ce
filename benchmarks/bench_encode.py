"""Encode throughput, CPU and memory: robovid's pipelined encoder against simple baselines.

Each contender encodes the same 300-frame 640x480 natural-content PNG episode with
libsvtav1 g=2 crf=30 and the same preset (robovid's default unless ``--preset``), in a fresh process
of its own, so its peak RSS is its own and torch is never imported:

- ``robovid``: ``robovid.encode.encode_frames`` (PNG reader thread + encoder), the library's default
  settings (``threads=None``: SVT-AV1 ``lp=1``, since the reader thread takes the other core);
- ``robovid threads=0`` / ``threads=2``: the same with SVT-AV1's own choice of parallelism, or ``lp=2``;
- ``naive``: for each PNG, Pillow open + convert("RGB"), ``av.VideoFrame.from_image``, encode, mux;
- ``naive, encoder default preset``: the same without a preset (what the reference module does);
- ``ffmpeg CLI``: ``ffmpeg -framerate 30 -i frame-%06d.png -c:v libsvtav1 -g 2 -crf 30 -preset P ...``
  (the system FFmpeg, which links its own, older SVT-AV1: see the versions in the JSON).

The floor is what the work costs when nothing is wasted: CPU seconds of PNG decoding
alone (``read_frame_rgb`` over all frames) plus CPU seconds of encoding alone (frames
already decoded in memory: RGB to yuv420p conversion + encode + mux), divided by the
cores in use. Wall time and CPU of in-process contenders cover the encode call only
(not interpreter start-up and imports); the CLI's cover its whole process.

    .venv/bin/python -m benchmarks.bench_encode            # 3 repeats, median
    .venv/bin/python -m benchmarks.bench_encode --quick    # 1 repeat of 60 frames, to try it out
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmarks import _common as c
from robovid.settings import DEFAULT_SVTAV1_PRESET

NAME = "bench_encode"
MODULE = "benchmarks.bench_encode"
G, CRF = 2, 30


# ---------------------------------------------------------------- workers (each runs in a fresh process)


def _codec_options(preset: str) -> dict[str, str]:
    options = {"g": str(G), "crf": str(CRF)}
    if preset != "none":
        options["preset"] = preset
    return options


def worker_robovid(episode: Path, out: Path, preset: str, threads: int | None) -> dict[str, Any]:
    from robovid.encode import encode_frames
    from robovid.frames import list_episode_frames
    from robovid.settings import EncoderSettings

    rss_after_import = c.rss_mb()
    settings = EncoderSettings(g=G, crf=CRF, preset=int(preset), threads=threads)
    paths = list_episode_frames(episode)
    wall, cpu, result = c.timed(lambda: encode_frames(paths, out, c.FPS, settings))
    return {"wall_s": wall, "cpu_s": cpu, "read_cpu_s": result.read_cpu_s, "rss_after_import_mb": rss_after_import}


def worker_naive(episode: Path, out: Path, preset: str) -> dict[str, Any]:
    """The plain sequential loop: read one PNG with Pillow, encode it, mux, repeat."""
    import time

    import av
    from PIL import Image

    rss_after_import = c.rss_mb()
    paths = c.frame_paths(episode)
    read_cpu = 0.0

    def encode() -> None:
        nonlocal read_cpu
        with Image.open(paths[0]) as first:
            width, height = first.size
        with av.open(str(out), "w") as output:
            stream = output.add_stream("libsvtav1", c.FPS, options=_codec_options(preset))
            stream.pix_fmt, stream.width, stream.height = "yuv420p", width, height
            for path in paths:
                started = time.thread_time()
                with Image.open(path) as image:
                    frame = av.VideoFrame.from_image(image.convert("RGB"))
                read_cpu += time.thread_time() - started
                output.mux(stream.encode(frame))
            output.mux(stream.encode(None))

    wall, cpu, _ = c.timed(encode)
    return {"wall_s": wall, "cpu_s": cpu, "read_cpu_s": read_cpu, "rss_after_import_mb": rss_after_import}


def worker_png(episode: Path) -> dict[str, Any]:
    """Floor, part 1: PNG decoding alone, one thread."""
    from robovid.frames import read_frame_rgb

    paths = c.frame_paths(episode)
    wall, cpu, _ = c.timed(lambda: [read_frame_rgb(p) for p in paths])
    return {"wall_s": wall, "cpu_s": cpu}


def worker_encode_only(episode: Path, out: Path, preset: str) -> dict[str, Any]:
    """Floor, part 2: frames already decoded in memory; conversion to yuv420p, then encode + mux."""
    import av

    from robovid.frames import read_frame_rgb
    from robovid.settings import EncoderSettings

    settings = EncoderSettings(g=G, crf=CRF, preset=int(preset))
    rgb = [read_frame_rgb(p) for p in c.frame_paths(episode)]
    height, width = rgb[0].shape[:2]
    convert_wall, convert_cpu, frames = c.timed(
        lambda: [av.VideoFrame.from_ndarray(x, format="rgb24").reformat(format="yuv420p") for x in rgb]
    )

    wall, cpu, _ = c.timed(
        lambda: c.encode_yuv_frames(out, settings.encoder_name, settings.codec_options(), frames, (width, height))
    )
    return {"wall_s": wall, "cpu_s": cpu, "convert_wall_s": convert_wall, "convert_cpu_s": convert_cpu}


def run_worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--episode", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--preset", default=str(DEFAULT_SVTAV1_PRESET))
    parser.add_argument("--threads", type=int, default=None, help="EncoderSettings.threads (default: the library's)")
    a = parser.parse_args(argv)
    if a.worker == "robovid":
        report = worker_robovid(a.episode, a.out, a.preset, a.threads)
    elif a.worker == "naive":
        report = worker_naive(a.episode, a.out, a.preset)
    elif a.worker == "png":
        report = worker_png(a.episode)
    elif a.worker == "encode_only":
        report = worker_encode_only(a.episode, a.out, a.preset)
    else:
        raise SystemExit(f"unknown worker {a.worker!r}")
    c.worker_report(**report)


# ---------------------------------------------------------------- contenders, run from the parent


CONTENDERS = [
    # key, label, in the equal-settings comparison
    ("robovid", "robovid encode_frames (pipelined, library defaults: lp=1)", True),
    ("robovid_lp0", "robovid, threads=0 (SVT's own choice)", True),
    ("robovid_lp2", "robovid, threads=2 (SVT lp=2)", True),
    ("naive", "naive sequential (Pillow + PyAV)", True),
    ("ffmpeg", "ffmpeg CLI", True),
    ("naive_default", "naive, encoder's default preset (reference)", False),
    ("floor_png", "floor: PNG decode only (read_frame_rgb)", False),
    ("floor_encode", "floor: encode only (frames in memory)", False),
]


def run_contender(key: str, episode: Path, out: Path, preset: str) -> dict[str, Any]:
    """One measured run of one contender; CPU/wall of the work, peak RSS of its process."""
    if key == "ffmpeg":
        return _run_ffmpeg(episode, out, preset)
    files = ["--episode", str(episode), "--out", str(out)]
    threads = {"robovid": [], "robovid_lp0": ["--threads", "0"], "robovid_lp2": ["--threads", "2"]}
    if key in threads:
        report = c.run_worker(MODULE, ["robovid", *files, "--preset", preset, *threads[key]])
    elif key == "naive":
        report = c.run_worker(MODULE, ["naive", *files, "--preset", preset])
    elif key == "naive_default":
        report = c.run_worker(MODULE, ["naive", *files, "--preset", "none"])
    elif key == "floor_png":
        report = c.run_worker(MODULE, ["png", "--episode", str(episode)])
    else:
        report = c.run_worker(MODULE, ["encode_only", *files, "--preset", preset])
    report["peak_rss_mb"] = report["process"]["peak_rss_mb"]
    return report


def _run_ffmpeg(episode: Path, out: Path, preset: str) -> dict[str, Any]:
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-framerate", str(c.FPS)]
    argv += ["-i", str(episode / "frame-%06d.png"), "-c:v", "libsvtav1", "-g", str(G), "-crf", str(CRF)]
    argv += ["-preset", preset, "-pix_fmt", "yuv420p", str(out)]
    m = c.run_measured(argv)
    if m.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({m.returncode}): {m.stderr[-2000:]}")
    return {
        "wall_s": m.wall_s,
        "cpu_s": m.cpu_s,
        "peak_rss_mb": m.peak_rss_mb,
        "argv": argv,
        "svt_log": c.svt_log_lines(m.stderr),
    }


def ffmpeg_has_libsvtav1() -> bool:
    if shutil.which("ffmpeg") is None:
        return False
    m = c.run_measured(["ffmpeg", "-hide_banner", "-encoders"])
    return any(line.split()[1:2] == ["libsvtav1"] for line in m.stdout.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=3, help="distinct episodes, used in turn by the repeats")
    parser.add_argument("--frames", type=int, default=c.EPISODE_FRAMES)
    parser.add_argument("--preset", default=str(DEFAULT_SVTAV1_PRESET))
    parser.add_argument("--quick", action="store_true", help="1 repeat of 60 frames")
    parser.add_argument(
        "--allow-realtime", action="store_true", help="as root, let SVT-AV1 give its threads SCHED_FIFO"
    )
    a = parser.parse_args(argv)
    c.REALTIME["allowed"] = a.allow_realtime
    if a.quick:
        a.repeats, a.episodes, a.frames = 1, 1, 60
    info = c.machine_info()
    c.print_header("bench_encode: 640x480 episodes, libsvtav1 g=2 crf=30", info)
    episodes = c.episode_dirs(a.episodes, a.frames)
    keys = [k for k, _, _ in CONTENDERS]
    has_cli = ffmpeg_has_libsvtav1()
    if not has_cli:
        print("the ffmpeg CLI lacks libsvtav1 (or is missing): its row is left out")
        keys.remove("ffmpeg")
    work = c.OUT_DIR / "encode"
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for repeat in range(a.repeats):
        episode = episodes[repeat % len(episodes)]
        order = keys[repeat % len(keys) :] + keys[: repeat % len(keys)]  # rotate: no contender always goes first
        print(f"repeat {repeat + 1}/{a.repeats} on {episode.name}, order {order}", flush=True)
        results = {key: run_contender(key, episode, work / f"{key}.mp4", a.preset) for key in order}
        _add_quality(results, episode, work)
        runs.append({"episode": str(episode), "load_avg": c.load_avg(), "results": results})
    summary = summarize(runs, keys, a.frames, info["nproc"])
    payload = {
        "benchmark": NAME,
        "machine": info,
        "load_avg_end": c.load_avg(),
        "settings": {"vcodec": "libsvtav1", "g": G, "crf": CRF, "preset": a.preset, "fps": c.FPS},
        "frames": a.frames,
        "repeats": a.repeats,
        "ffmpeg_cli_has_libsvtav1": has_cli,
        "cores_in_use": info["nproc"],
        "runs": runs,
        **summary,
    }
    print_summary(payload)
    print(f"\nwrote {c.write_json(NAME + ('_realtime' if a.allow_realtime else ''), payload)}")
    return payload


def _add_quality(results: dict[str, dict[str, Any]], episode: Path, work: Path) -> None:
    """Output bytes, frame count and mean PSNR against the source PNGs, for every contender that wrote a video."""
    sources = c.read_sources(c.frame_paths(episode))
    for key, result in results.items():
        video = work / f"{key}.mp4"
        if key == "floor_png" or not video.exists():
            continue
        result["bytes"] = video.stat().st_size
        quality = c.mean_psnr(video, sources, episode=int(episode.name.split("-")[1]))
        result["psnr_db"], result["scene_psnr_db"] = quality.psnr_db, quality.scene_psnr_db
        result["unreadable_index_frames"] = quality.unreadable_index_frames
        if quality.frames != len(sources):
            raise RuntimeError(f"{key} wrote {quality.frames} frames, not {len(sources)}")
        video.unlink()


def summarize(runs: list[dict[str, Any]], keys: list[str], frames: int, cores: int) -> dict[str, Any]:
    """Medians per contender and the paired (same repeat) ratios the targets are judged on."""
    med: dict[str, dict[str, float]] = {}
    for key in keys:
        rows = [run["results"][key] for run in runs]
        m = {f: c.median([r[f] for r in rows]) for f in ("wall_s", "cpu_s", "peak_rss_mb")}
        for f in (
            "bytes",
            "psnr_db",
            "scene_psnr_db",
            "unreadable_index_frames",
            "read_cpu_s",
            "rss_after_import_mb",
            "convert_cpu_s",
        ):
            if f in rows[0]:
                m[f] = c.median([r[f] for r in rows])
        m["frames_per_s"] = frames / m["wall_s"]
        m["cpu_ms_per_frame"] = 1000 * m["cpu_s"] / frames
        med[key] = m

    def paired(fn: Any) -> float:
        return c.median([fn(run["results"]) for run in runs])

    def floor_s(r: dict[str, Any]) -> float:
        return (r["floor_png"]["cpu_s"] + r["floor_encode"]["convert_cpu_s"] + r["floor_encode"]["cpu_s"]) / cores

    ratios = {
        "floor_s": paired(floor_s),
        "robovid_wall_over_floor": paired(lambda r: r["robovid"]["wall_s"] / floor_s(r)),
        "robovid_cpu_over_naive_cpu": paired(lambda r: r["robovid"]["cpu_s"] / r["naive"]["cpu_s"]),
        "robovid_cpu_over_floor_cpu": paired(lambda r: r["robovid"]["cpu_s"] / (floor_s(r) * cores)),
        "robovid_wall_over_naive_wall": paired(lambda r: r["robovid"]["wall_s"] / r["naive"]["wall_s"]),
        "robovid_rss_over_naive_rss": paired(lambda r: r["robovid"]["peak_rss_mb"] / r["naive"]["peak_rss_mb"]),
        "encode_only_wall_over_its_cpu_per_core": paired(
            lambda r: r["floor_encode"]["wall_s"] / (r["floor_encode"]["cpu_s"] / cores)
        ),
    }
    # On a busy machine the encoder alone does not get every core: how many it got (same repeat) is
    # its CPU over its wall time; the floor over that many cores is the best robovid could do then.
    ratios["cores_available_estimate"] = paired(
        lambda r: min(cores, r["floor_encode"]["cpu_s"] / r["floor_encode"]["wall_s"])
    )
    ratios["robovid_wall_over_load_adjusted_floor"] = paired(
        lambda r: (
            r["robovid"]["wall_s"]
            / (floor_s(r) * cores / min(cores, r["floor_encode"]["cpu_s"] / r["floor_encode"]["wall_s"]))
        )
    )
    ratios["robovid_rss_above_imports_over_naive"] = paired(
        lambda r: (
            (r["robovid"]["peak_rss_mb"] - r["robovid"]["rss_after_import_mb"])
            / (r["naive"]["peak_rss_mb"] - r["naive"]["rss_after_import_mb"])
        )
    )
    if "ffmpeg" in keys:
        ratios["robovid_wall_over_ffmpeg_wall"] = paired(lambda r: r["robovid"]["wall_s"] / r["ffmpeg"]["wall_s"])
    equal = {}
    for key in keys:
        if "bytes" in med[key] and key != "robovid":
            size_ratio = med[key]["bytes"] / med["robovid"]["bytes"]
            psnr_delta = med[key]["psnr_db"] - med["robovid"]["psnr_db"]
            scene_delta = med[key]["scene_psnr_db"] - med["robovid"]["scene_psnr_db"]
            equal[key] = {
                "bytes_vs_robovid": size_ratio,
                "psnr_db_vs_robovid": psnr_delta,
                "scene_psnr_db_vs_robovid": scene_delta,
                "equal_settings": abs(size_ratio - 1) <= 0.05 and max(abs(psnr_delta), abs(scene_delta)) <= 0.2,
            }
    targets = [
        c.target("robovid wall / floor <= 1.10", ratios["robovid_wall_over_floor"], 1.10),
        c.target("robovid CPU / naive CPU <= 0.85", ratios["robovid_cpu_over_naive_cpu"], 0.85),
        c.target("robovid peak RSS / naive peak RSS <= 1.0", ratios["robovid_rss_over_naive_rss"], 1.0),
    ]
    if "ffmpeg" in keys:
        targets.append(c.target("robovid wall / ffmpeg CLI wall <= 1.0", ratios["robovid_wall_over_ffmpeg_wall"], 1.0))
    return {"medians": med, "ratios": ratios, "equal_settings": equal, "targets": targets}


def print_summary(p: dict[str, Any]) -> None:
    labels = {k: label for k, label, _ in CONTENDERS}
    nan = float("nan")
    cost, output = [], []
    for key, m in p["medians"].items():
        eq = p["equal_settings"].get(key, {})
        cost.append(
            [
                labels[key],
                *(m["wall_s"], m["cpu_s"], m["frames_per_s"], m["cpu_ms_per_frame"], m["peak_rss_mb"]),
                *(m.get("rss_after_import_mb", nan), m.get("read_cpu_s", nan)),
            ]
        )
        if "bytes" in m:
            output.append(
                [
                    labels[key],
                    *(m["bytes"] / 1e6, m["psnr_db"], m["scene_psnr_db"], m["unreadable_index_frames"]),
                    *(eq.get("bytes_vs_robovid", nan), eq.get("psnr_db_vs_robovid", nan)),
                    *(eq.get("scene_psnr_db_vs_robovid", nan), eq.get("equal_settings", "-")),
                ]
            )
    print()
    headers = ["contender", "wall s", "CPU s", "frames/s", "CPU ms/frame", "peak RSS MB", "RSS after imports MB"]
    print(c.table([*headers, "PNG-read CPU s"], cost))
    print()
    headers = ["contender", "MB out", "PSNR dB", "scene PSNR dB", "unreadable index frames", "size vs robovid"]
    print(c.table([*headers, "dPSNR", "dPSNR scene", "equal settings"], output))
    print(
        f"\nmedians of {p['repeats']} repeats, {p['frames']} frames; load {p['machine']['load_avg_start']} -> "
        f"{p['load_avg_end']}; floor = (PNG CPU + conversion CPU + encode CPU) / {p['cores_in_use']} cores "
        f"= {p['ratios']['floor_s']:.2f} s"
    )
    c.print_targets(p["targets"])
    c.print_ratios(p["ratios"], "ratio (paired, median of repeats)")
    print("\nSVT-AV1's own log (version, preset actually used, parallelism), per contender:")
    for key in p["medians"]:
        lines = sorted({line for run in p["runs"] for line in run["results"][key].get("svt_log", [])})
        if lines:
            print(f"  {key}: " + " | ".join(lines))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        run_worker_main(sys.argv[1:])
    else:
        main()
