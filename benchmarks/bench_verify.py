"""What the verify stage costs per frame, as a share of the encode it checks (issue 8, section 3).

One natural-content PNG episode per size (640x480 and 1280x720, 300 frames) is encoded the way
the service does (``encode_frames_into`` into memory, robovid's default settings), then verified
the way the service does (``verify_video``: every frame decoded, the frame count, PSNR of the
sampled frames). All in one process, one repeat after the other, CPU time of the whole process:

- ``encode``: the encode without fingerprints;
- ``encode + fingerprints``: the same, every source frame's fingerprint taken in the reader thread;
- ``fingerprints alone``: :func:`robovid.fingerprint.fingerprint` of the first 60 source frames
  (already in yuv420p), timed alone, since the difference of two encodes is lost in their noise;
- ``verify, old checks``: decode + count + sampled PSNR (what the stage did before the tile check);
- ``verify, with tile check``: the same plus every decoded frame's fingerprint compared tile by tile.

Reported: CPU ms per frame of each (medians of the repeats) and the ratios that matter:
verification (fingerprints + verify with tile check) over the encode, and what the tile check
adds (fingerprints + the difference of the two verifies) over the encode.

    .venv/bin/python -m benchmarks.bench_verify [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import io
from typing import Any

from benchmarks import _common as c

NAME = "bench_verify"
SIZES = ((640, 480), (1280, 720))
STAGES = ("encode", "encode_with_fingerprints", "fingerprints_alone", "verify_old_checks", "verify_with_tile_check")
FINGERPRINT_FRAMES = 60
"""Frames fingerprinted alone (held in memory as yuv420p: 83 MB at 1280x720)."""


def measure(width: int, height: int, frames: int, repeats: int) -> dict[str, Any]:
    import av

    from robovid.settings import EncoderSettings

    episode = c.episode_dirs(1, frames, width, height)[0]
    paths = c.frame_paths(episode)[:frames]
    settings = EncoderSettings()
    sample = {0, frames // 2, frames - 1}
    rgb = c.read_sources(paths[:FINGERPRINT_FRAMES])
    yuv = [av.VideoFrame.from_ndarray(x, format="rgb24").reformat(format="yuv420p") for x in rgb]
    runs: list[dict[str, float]] = []
    for repeat in range(repeats):
        runs.append(one_repeat(paths, yuv, settings, sample))
        print(f"  {width}x{height} repeat {repeat + 1}: " + ", ".join(f"{k} {v:.3g}" for k, v in runs[-1].items()))
    ms = {k: 1000 * c.median([r[k] for r in runs]) / frames for k in STAGES}
    verification = ms["fingerprints_alone"] + ms["verify_with_tile_check"]
    added = ms["fingerprints_alone"] + ms["verify_with_tile_check"] - ms["verify_old_checks"]
    return {
        "runs": runs,
        "cpu_ms_per_frame": ms,
        "fingerprint_bytes_per_frame": runs[0]["fingerprint_bytes_per_frame"],
        "ratios": {
            "verification_over_encode": verification / ms["encode"],
            "tile_check_added_over_encode": added / ms["encode"],
            "fingerprints_over_encode": ms["fingerprints_alone"] / ms["encode"],
        },
    }


def one_repeat(paths: list[Any], yuv: list[Any], settings: Any, sample: set[int]) -> dict[str, float]:
    """CPU seconds of each step for the whole episode (fingerprints alone: scaled up from ``yuv``)."""
    from robovid.encode import encode_frames_into
    from robovid.fingerprint import fingerprint
    from robovid.verify import verify_video

    frames = len(paths)
    out_plain, out = io.BytesIO(), io.BytesIO()
    _, encode_s, _ = c.timed(lambda: encode_frames_into(out_plain, paths, c.FPS, settings, keep=sample))
    _, encode_fp_s, result = c.timed(
        lambda: encode_frames_into(out, paths, c.FPS, settings, keep=sample, fingerprints=True)
    )
    _, fingerprints_s, _ = c.timed(lambda: [fingerprint(f) for f in yuv])
    _, verify_old_s, _ = c.timed(lambda: verify_video(out, frames, result.kept_frames))
    _, verify_new_s, _ = c.timed(
        lambda: verify_video(out, frames, result.kept_frames, fingerprints=result.fingerprints)
    )
    return {
        "encode": encode_s,
        "encode_with_fingerprints": encode_fp_s,
        "fingerprints_alone": fingerprints_s * frames / len(yuv),
        "verify_old_checks": verify_old_s,
        "verify_with_tile_check": verify_new_s,
        "fingerprint_bytes_per_frame": result.fingerprints[0].size_bytes,
        "load_avg_1min": c.load_avg()[0],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=c.EPISODE_FRAMES)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 60 frames")
    a = parser.parse_args(argv)
    if a.quick:
        a.repeats, a.frames = 1, 60
    info = c.machine_info()
    c.print_header("bench_verify: the verify stage's CPU per frame against the encode's, one process", info)
    results = {f"{w}x{h}": measure(w, h, a.frames, a.repeats) for w, h in SIZES}
    payload = {"benchmark": NAME, "machine": info, "load_avg_end": c.load_avg(), "frames": a.frames, "sizes": results}
    rows = []
    for size, r in results.items():
        ms = r["cpu_ms_per_frame"]
        rows.append(
            [
                size,
                ms["encode"],
                ms["encode_with_fingerprints"],
                ms["fingerprints_alone"],
                ms["verify_old_checks"],
                ms["verify_with_tile_check"],
                r["ratios"]["verification_over_encode"],
                r["ratios"]["tile_check_added_over_encode"],
                r["fingerprint_bytes_per_frame"] / 1000,
            ]
        )
    headers = ["size", "encode", "encode + fingerprints", "fingerprints alone", "verify, old checks"]
    headers += ["verify + tile check", "verification / encode", "tile check added / encode", "fingerprint kB/frame"]
    print("\nCPU ms per frame (medians of the repeats) and ratios")
    print(c.table(headers, rows))
    print(f"\nload {info['load_avg_start']} -> {payload['load_avg_end']}")
    print(f"wrote {c.write_json(NAME, payload)}")
    return payload


if __name__ == "__main__":
    main()
