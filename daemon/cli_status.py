"""`robovid status`: pending, failed and done episodes of a root, and the throughput of the last hour."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def add_status(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser("status", help="show pending, failed and done episodes and the throughput")
    status.add_argument("root", type=Path)
    status.add_argument("--json", action="store_true", help="print as JSON")
    status.set_defaults(func=_cmd_status)


def _cmd_status(args: argparse.Namespace) -> int:
    report = status_report(args.root)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"root: {args.root}")
    print(f"done: {report['done']} segments ({report['recorded_s_done']:.0f} s of recording)")
    print(f"pending: {report['pending']} episode folders ({report['pending_png_mb']:.1f} MB of PNG)")
    print(f"failed: {len(report['failed'])}")
    for failure in report["failed"]:
        print(f"  {failure['camera']!r} episode {failure['episode']}: {failure['reason']}")
    print(f"deferred (not the episode's fault; the next rescan or run retries it): {len(report['deferred'])}")
    for deferral in report["deferred"]:
        print(f"  {deferral['camera']!r} episode {deferral['episode']}: {deferral['reason']}")
    print(f"crash suspects (in flight during a native crash; processed alone): {len(report['crash_suspects'])}")
    for suspect in report["crash_suspects"]:
        print(
            f"  {suspect['camera']!r} episode {suspect['episode']}: {suspect['crashes']} crashes "
            f"({suspect['sure_crashes']} surely its own); logs: {', '.join(suspect['crash_logs'])}"
        )
    if report["crash_logs"]:
        print(f"native crash logs kept: {len(report['crash_logs'])} (newest: {report['crash_logs'][-1]})")
    print(
        f"last hour: {report['recorded_s_last_hour']:.0f} s of recording (all cameras) processed in "
        f"{report['busy_s_last_hour']:.0f} s of busy time: real-time factor {report['realtime_factor_last_hour']:.2f} "
        "(>= 1 keeps up with the recorder)"
    )
    return 0


def status_report(root: Path) -> dict[str, Any]:
    """Counts for `robovid status` (also used by tests)."""
    from robovid.metadata import read_segments

    from .crashguard import crash_records, kept_crash_logs
    from .state import RootState

    rows = read_segments(root).to_pylist()
    since = datetime.now(UTC) - timedelta(hours=1)
    recent = [r for r in rows if r["committed_at"] is not None and r["committed_at"] >= since]
    cameras = max(1, len({r["video_key"] for r in recent}))
    recorded_recent = sum(r["num_frames"] / r["fps"] for r in recent) / cameras
    busy = _busy_wall_s(recent)
    committed = {(r["video_key"], r["episode_index"]) for r in rows}
    pending, pending_bytes, kept = 0, 0, 0
    unreadable: list[str] = []
    for camera, index, frame_bytes in _episode_folders(root, unreadable):
        if frame_bytes is None:
            continue
        if (camera, index) in committed:
            kept += 1  # frames kept in a committed episode's folder (reported as failed or continued)
        else:
            pending += 1
            pending_bytes += frame_bytes
    state = RootState(root, read_only=True)
    failures = [vars(f) for f in state.failures()]
    failed_keys = {(f["camera"], f["episode"]) for f in failures}
    return {
        "done": len(rows),
        "recorded_s_done": sum(r["num_frames"] / r["fps"] for r in rows),
        "pending": pending,
        "pending_png_mb": pending_bytes / 1e6,
        "kept_in_committed_folders": kept,
        "unreadable": unreadable,
        "failed": failures,
        "deferred": [vars(d) for d in state.deferrals()],
        "crash_suspects": [
            vars(c) for c in crash_records(state) if (c.camera, c.episode) not in failed_keys and Path(c.path).exists()
        ],
        "crash_logs": kept_crash_logs(root),
        "recorded_s_last_hour": recorded_recent,
        "busy_s_last_hour": busy,
        "realtime_factor_last_hour": recorded_recent / busy if busy else 0.0,
    }


def _episode_folders(root: Path, unreadable: list[str]) -> Iterator[tuple[str, int, int | None]]:
    """(camera, episode, bytes of its frame PNGs or None when it holds none) of every episode folder.

    Folders that cannot be listed (permissions, a dangling symlink) are added to ``unreadable``.
    """
    from robovid.layout import FRAME_RE, images_dir, parse_episode_dir

    def entries(path: Path | str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(path) as it:
                return list(it)
        except FileNotFoundError:
            return []
        except OSError as error:
            unreadable.append(f"{path}: {error.strerror or error}")
            return []

    for camera in entries(images_dir(root)):
        if camera.name.startswith(".") or not (camera.is_dir() or camera.is_symlink()):
            continue
        for episode in entries(camera.path):
            index = parse_episode_dir(episode.name)
            if index is None or not (episode.is_dir() or episode.is_symlink()):
                continue
            sizes = []
            for frame in entries(episode.path):
                if FRAME_RE.fullmatch(frame.name):
                    try:
                        sizes.append(frame.stat().st_size)
                    except OSError as error:
                        unreadable.append(f"{frame.path}: {error.strerror or error}")
            yield camera.name, index, (sum(sizes) if sizes else None)


def _busy_wall_s(rows: list[dict[str, Any]]) -> float:
    """Wall seconds during which at least one episode was being processed (union of their spans)."""
    from .watch_metrics import busy_wall_s

    return busy_wall_s(
        [
            (end.timestamp() - ((r["encode_s"] or 0) + (r["verify_s"] or 0) + (r["append_s"] or 0)), end.timestamp())
            for r in rows
            if (end := r["committed_at"]) is not None
        ]
    )
