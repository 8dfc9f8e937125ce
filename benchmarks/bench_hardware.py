"""Hardware encoders against robovid's software default: speed and fidelity, for a machine that has one.

NOT RUN ON THIS PROJECT'S MACHINES: they have no GPU, VAAPI device or V4L2 encoder, so every
hardware row there says why it could not run (the probe's reason) and only the software rows
have numbers. A person with NVIDIA (NVENC), Intel (QSV, VAAPI), Apple (VideoToolbox) or a
V4L2 M2M board (Raspberry Pi class) runs this and pastes the table into benchmarks/README.md:

    make setup && .venv/bin/python -m benchmarks.bench_hardware            # 3 episodes, ~5 min
    .venv/bin/python -m benchmarks.bench_hardware --quick                  # 1 episode
    .venv/bin/python -m benchmarks.bench_hardware --encoders h264_nvenc libsvtav1

Each encoder encodes the same 300-frame 640x480 episodes (natural content, the (episode,
frame) index burnt in; ``robovid.synthetic``) through ``robovid.encode_video_frames`` with
``RGBEncoderConfig(vcodec=..., g=2, crf=30)``, each encode in a fresh process. Per encoder:

- speed: wall s, process CPU s, frames/s, CPU ms per frame (a hardware encoder's work is on the
  device: low CPU with high frames/s is the point), as a ratio to libsvtav1 in the same run;
- size: kB per frame;
- fidelity: mean RGB PSNR against the source PNGs (whole frame and the scene below the index
  strip), frames whose burnt-in index reads wrong in a full decode (stale or lost content), and
  random access: 40 random frames fetched with torchcodec (approximate mode) and with robovid's
  PyAV backend must each be the frame asked for (wrong ones are counted);
- the probe's reason (``robovid.hardware.probe_encoder``) for encoders that could not run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "bench_hardware"
G, CRF = 2, 30
RANDOM_FRAMES = 40
SOFTWARE = ["libsvtav1", "h264", "hevc"]


def worker(vcodec: str, episode: Path, out: Path) -> None:
    from robovid import RGBEncoderConfig, encode_video_frames

    config = RGBEncoderConfig(vcodec=vcodec, g=G, crf=CRF)
    wall, cpu, _ = c.timed(lambda: encode_video_frames(episode, out, c.FPS, video_encoder=config, overwrite=True))
    c.worker_report(wall_s=wall, cpu_s=cpu, pix_fmt=config.pix_fmt)


def random_access_misses(video: Path, episode: int, frames: int, seed: int) -> dict[str, int]:
    """Random frames fetched by torchcodec and by robovid's PyAV backend that are not the frame asked for."""
    import numpy as np
    from torchcodec.decoders import VideoDecoder

    from robovid import decode_video_frames
    from robovid.synthetic import read_index

    wanted = random.Random(seed).choices(range(frames), k=RANDOM_FRAMES)
    decoded = VideoDecoder(str(video), seek_mode="approximate").get_frames_at(wanted).data.numpy()
    by_torchcodec = [read_index(f.transpose(1, 2, 0)) for f in decoded]
    pyav = decode_video_frames(video, [i / c.FPS for i in wanted], 1e-4, backend="pyav", return_uint8=True)
    by_pyav = [read_index(np.asarray(f).transpose(1, 2, 0)) for f in pyav]
    expected = [(episode, i) for i in wanted]
    return {
        "torchcodec": sum(a != b for a, b in zip(by_torchcodec, expected, strict=True)),
        "pyav": sum(a != b for a, b in zip(by_pyav, expected, strict=True)),
    }


def measure(vcodec: str, episodes: list[Path], out_dir: Path) -> dict[str, Any]:
    from robovid.hardware import probe_encoder

    probe = probe_encoder(vcodec)
    row: dict[str, Any] = {"vcodec": vcodec, "ran": probe.available, "probe": probe.reason, "episodes": []}
    if not probe.available:
        return row
    for index, episode in enumerate(episodes):
        out = out_dir / f"{vcodec}-{episode.name}.mp4"
        report = c.run_worker("benchmarks.bench_hardware", [vcodec, str(episode), str(out)])
        sources = c.read_sources(c.frame_paths(episode))
        quality = c.mean_psnr(out, sources, episode=index)
        report |= {
            "kb_per_frame": out.stat().st_size / 1024 / len(sources),
            "psnr_db": quality.psnr_db,
            "scene_psnr_db": quality.scene_psnr_db,
            "wrong_index_frames": quality.unreadable_index_frames,
            "random_access_wrong": random_access_misses(out, index, len(sources), seed=index),
            "frames": len(sources),
        }
        row["episodes"].append(report)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    for row in rows:
        eps = row["episodes"]
        if not eps:
            continue
        frames = sum(e["frames"] for e in eps)
        row["wall_s"] = c.median([e["wall_s"] for e in eps])
        row["cpu_s"] = c.median([e["cpu_s"] for e in eps])
        row["fps"] = frames / sum(e["wall_s"] for e in eps)
        row["cpu_ms_per_frame"] = 1000 * sum(e["cpu_s"] for e in eps) / frames
        row["kb_per_frame"] = c.median([e["kb_per_frame"] for e in eps])
        row["psnr_db"] = c.median([e["psnr_db"] for e in eps])
        row["scene_psnr_db"] = c.median([e["scene_psnr_db"] for e in eps])
        row["wrong_index_frames"] = sum(e["wrong_index_frames"] for e in eps)
        row["random_access_wrong"] = sum(sum(e["random_access_wrong"].values()) for e in eps)
    base = next((r for r in rows if r["vcodec"] == "libsvtav1" and r["episodes"]), None)
    ratios = {}
    for row in rows:
        if base and row["episodes"] and row is not base:
            ratios[f"{row['vcodec']} frames/s over libsvtav1"] = row["fps"] / base["fps"]
            ratios[f"{row['vcodec']} CPU per frame over libsvtav1"] = row["cpu_ms_per_frame"] / base["cpu_ms_per_frame"]
            ratios[f"{row['vcodec']} bytes over libsvtav1"] = row["kb_per_frame"] / base["kb_per_frame"]
    return {"rows": rows, "ratios": ratios}


def print_summary(p: dict[str, Any]) -> None:
    headers = [
        "encoder",
        "ran here",
        "frames/s",
        "CPU ms/frame",
        "kB/frame",
        "PSNR dB",
        "scene PSNR dB",
        "wrong-index frames",
        "random access wrong",
        "probe",
    ]
    rows = []
    for r in p["rows"]:
        numbers = [
            r.get(k, float("nan")) for k in ("fps", "cpu_ms_per_frame", "kb_per_frame", "psnr_db", "scene_psnr_db")
        ]
        counts = [r.get("wrong_index_frames", "-"), r.get("random_access_wrong", "-")]
        rows.append([r["vcodec"], r["ran"], *numbers, *counts, r["probe"]])
    print()
    print(c.table(headers, rows))
    print(f"\nload {p['machine']['load_avg_start']} -> {p['load_avg_end']}")
    c.print_ratios(p["ratios"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one episode per encoder")
    parser.add_argument(
        "--encoders", nargs="+", help="vcodecs to measure (default: every hardware encoder, then software)"
    )
    parser.add_argument("--worker", nargs=3, metavar=("VCODEC", "EPISODE", "OUT"), help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.worker:
        worker(a.worker[0], Path(a.worker[1]), Path(a.worker[2]))
        return {}
    from robovid.encoders import HW_VIDEO_CODECS

    info = c.machine_info()
    c.print_header("bench_hardware: hardware encoders against libsvtav1 (speed and fidelity)", info)
    episodes = c.episode_dirs(1 if a.quick else 3)
    out_dir = c.OUT_DIR / "hardware"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [measure(v, episodes, out_dir) for v in (a.encoders or [*HW_VIDEO_CODECS, *SOFTWARE])]
    payload = {"benchmark": NAME, "machine": info, "load_avg_end": c.load_avg(), **summarize(rows)}
    print_summary(payload)
    print(f"\nwrote {c.write_json(NAME, json.loads(json.dumps(payload, default=str)))}")
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
