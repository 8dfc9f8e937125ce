"""The service's peak memory by ROBOVID_MALLOC_ARENAS, each against glibc's own limit in the same run.

The real robovid-watch drains the same recorded backlog (bench_e2e's drain: 2 cameras of
640x480 at 30 fps, 4 episodes of 300 frames) once per setting, the settings interleaved round by
round, so load drifts hit all of them alike. For each setting: peak and steady RSS of the
service process, and its CPU seconds per recorded second (the whole process's, every thread),
as medians over the rounds and as ratios to ``ROBOVID_MALLOC_ARENAS=0`` (glibc's limit, 8
arenas per core). CPU, not wall clock, so the ratio holds on a loaded machine; a capped arena's
lock waits do not show in CPU, so the real-time factors are listed too, with the load.

    .venv/bin/python -m benchmarks.bench_memory [--quick] [--rounds 2] [--variants ENV;ENV...] [--configs 2x640x480]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from dataclasses import asdict

from benchmarks.bench_e2e import OUT, Config, Result, frame_pool, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="passes over every setting (interleaved)")
    parser.add_argument(
        "--variants",
        default="ROBOVID_MALLOC_ARENAS=0;ROBOVID_MALLOC_ARENAS=2;ROBOVID_MALLOC_ARENAS=1",
        help="';'-separated service environments, each a ','-separated KEY=VALUE list; the first is the baseline",
    )
    parser.add_argument("--configs", default="2x640x480", help="comma list like 2x640x480")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 episodes of 150 frames")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.episodes, args.frames = 1, 2, 150
    settings = args.variants.split(";")
    shapes = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    load_at_start = os.getloadavg()
    document: dict[str, object] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
            "nproc": os.cpu_count(),
            "rounds": args.rounds,
            "episodes": args.episodes,
            "frames_per_episode": args.frames,
        },
        "configs": {},
    }
    for cameras, width, height in shapes:
        config = Config(cameras, width, height, args.episodes, args.frames, "drain")
        pools = [frame_pool(width, height, camera, 90) for camera in range(cameras)]
        results: dict[str, list[Result]] = {variant: [] for variant in settings}
        for round_ in range(args.rounds):
            for variant in settings:
                result = run(config, pools, dict(item.split("=", 1) for item in variant.split(",")))
                results[variant].append(result)
                print(
                    f"{config.name} {variant} round {round_}: peak RSS {result.peak_rss_mb:6.1f} MB  steady "
                    f"{result.steady_rss_mb:6.1f} MB  CPU/rec-s {result.cpu_s_per_recorded_s:5.3f}  "
                    f"RT {result.realtime_factor:5.2f}  load {result.load_start}->{result.load_end}",
                    flush=True,
                )
        summary = _summary(results, settings[0])
        for row in summary:
            print(
                f"{config.name} {row['environment']}: peak RSS {row['peak_rss_mb']} MB ({row['peak_rss_ratio']}x), "
                f"steady {row['steady_rss_mb']} MB, CPU/rec-s {row['cpu_s_per_recorded_s']} "
                f"({row['cpu_ratio']}x), RT {row['realtime_factor']}"
            )
        document["configs"][config.name] = {  # type: ignore[index]
            "summary": summary,
            "runs": {variant: [asdict(r) | {"backlog": None} for r in rs] for variant, rs in results.items()},
        }
    document["meta"]["loadavg_at_start"] = load_at_start  # type: ignore[index]
    document["meta"]["loadavg_at_end"] = os.getloadavg()  # type: ignore[index]
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_memory.json").write_text(json.dumps(document, indent=1))
    return 0


def _summary(results: dict[str, list[Result]], baseline: str) -> list[dict[str, object]]:
    """Medians per setting, and their ratios to the baseline setting's medians."""

    def median(variant: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[variant])

    rows = []
    for variant in results:
        rows.append(
            {
                "environment": variant,
                "peak_rss_mb": round(median(variant, "peak_rss_mb"), 1),
                "peak_rss_ratio": round(median(variant, "peak_rss_mb") / median(baseline, "peak_rss_mb"), 2),
                "steady_rss_mb": round(median(variant, "steady_rss_mb"), 1),
                "cpu_s_per_recorded_s": round(median(variant, "cpu_s_per_recorded_s"), 3),
                "cpu_ratio": round(
                    median(variant, "cpu_s_per_recorded_s") / median(baseline, "cpu_s_per_recorded_s"), 3
                ),
                "realtime_factor": round(median(variant, "realtime_factor"), 2),
            }
        )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
