"""``robovid``: the command line for people at a terminal (the service's side: ``process`` runs its pipeline).

robovid process ROOT     drain the backlog once (progress bar), then exit; --ray: encode on a Ray cluster
robovid convert SRC DEST a LeRobot v2.1 archive of episode MP4s into chunk files (--ray: re-encodes on Ray)
robovid verify ROOT      decode every segment's first and last frame via the metadata
robovid status ROOT      pending, failed and done episodes; throughput of the last hour
robovid info FILE        probe a video file
robovid merge DEST SRC.. merge robots' roots into one dataset
robovid simulate ROOT    write episodes the way a recorder does (for demos and tests)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .errors import EXIT_FAILURE as EXIT_PROBLEMS
from .errors import EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_USAGE
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only, not its banner on every encode
    code: int = args.func(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robovid",
        description="Turn robot-learning PNG episodes into chunked video, check it, and inspect it.",
        epilog="The service is `robovid-watch` (configured by ROBOVID_* variables, see systemd/robovid.env).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    process = commands.add_parser(
        "process",
        help="encode every complete episode under ROOT once, then exit",
        description="Encode every complete episode folder under ROOT/images with the ROBOVID_* settings "
        "(the service's pipeline and crash safety), with a progress bar, then exit. "
        "Refuses to run while robovid-watch holds ROOT.",
    )
    process.add_argument("root", type=Path, help="recording root (holds images/)")
    process.add_argument("--workers", type=int, help="episodes encoded at once (default: ROBOVID_WORKERS or 2)")
    process.add_argument("--no-progress", action="store_true", help="no progress bar")
    process.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="PNG decode, encode and verify as Ray tasks on the cluster at ADDRESS (host:port; without it, "
        "RAY_ADDRESS or a new local cluster); appends and commits stay here. --workers defaults to the "
        "cluster's CPUs (at most 64). The root must be at the same path on every node. Needs robovid[ray].",
    )
    process.set_defaults(func=_cmd_process)

    convert = commands.add_parser(
        "convert",
        help="turn a LeRobot v2.1 archive of per-episode MP4s into chunked files (optionally on a Ray cluster)",
        description="Append every episode MP4 of SRC (LeRobot v2.1: meta/info.json, meta/episodes.jsonl, "
        "videos/chunk-*/KEY/episode_*.mp4) to DEST's chunk files, with rows at exact offsets, crash-safely (the "
        "service's journal; a rerun finishes and duplicates nothing). Files robovid can append are copied byte for "
        "byte; the others are re-encoded with the ROBOVID_* settings and verified. SRC is only read. For PNG "
        "folders, use `robovid process ROOT [--ray]`.",
    )
    convert.add_argument("src", type=Path, help="the LeRobot v2.1 dataset folder")
    convert.add_argument("dest", type=Path, help="a robovid root (created if missing)")
    convert.add_argument("--workers", type=int, help="episodes prepared at once (default: ROBOVID_WORKERS or 2)")
    convert.add_argument(
        "--ray", nargs="?", const="", metavar="ADDRESS", help="re-encode as Ray tasks (see `process --ray`)"
    )
    convert.set_defaults(func=_cmd_convert)

    verify = commands.add_parser(
        "verify",
        help="decode each segment's first and last frame through the metadata",
        description="For every row of ROOT/.cache/huggingface/robovid/segments: the chunk file exists, holds the segment's "
        "frames, and its first and last frames decode at their timestamps. Exit 1 on any problem.",
    )
    verify.add_argument("root", help="a recording root, or a remote one as an fsspec URL (s3://bucket/fleet/robot-7)")
    verify.add_argument(
        "--remote",
        metavar="URL",
        help="where robovid-ship ships this root (ROBOVID_SHIP_DEST/ROBOVID_SHIP_ROBOT_ID): check the files it "
        "shipped and deleted here in their remote copies",
    )
    verify.add_argument("--backend", default="pyav", help="pyav (default, no torch needed) or torchcodec")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(func=_cmd_verify)

    status = commands.add_parser("status", help="show pending, failed and done episodes and the throughput")
    status.add_argument("root", type=Path)
    status.add_argument("--json", action="store_true", help="print as JSON")
    status.set_defaults(func=_cmd_status)

    info = commands.add_parser("info", help="probe a video file (codec, size, fps, frames, encoder settings)")
    info.add_argument("file", type=Path)
    info.set_defaults(func=_cmd_info)

    lerobot = commands.add_parser(
        "lerobot",
        help="make ROOT a LeRobot v3 dataset LeRobotDataset loads",
        description="In a LeRobot root (recorded by LeRobot with its encoding off): write robovid's video columns "
        "into LeRobot's episodes files and features info into info.json; LeRobot must have finalized. In any other "
        "root: export the committed episodes as a LeRobot v3 dataset (info.json, data, episodes, tasks, stats). "
        "robovid-watch does this by itself with ROBOVID_LEROBOT_ENCODE / ROBOVID_LEROBOT_EXPORT. "
        "Exit 0 when the dataset holds every episode, 1 naming what is missing.",
    )
    lerobot.add_argument("root", type=Path)
    lerobot.add_argument("--task", default=None, help="task text of exported episodes (default: ROBOVID_LEROBOT_TASK)")
    lerobot.set_defaults(func=_cmd_lerobot)

    retake = commands.add_parser(
        "retake",
        help="make the take now in a committed episode's folder its new take",
        description="An episode recorded again into a committed episode's folder is refused (its PNGs kept, "
        "DuplicateEpisodeError). This asks robovid-watch (or the next `robovid process`) to encode it as the "
        "episode's next take instead: appended as a new segment and committed as the episode's row, while the "
        "committed take's row and frames stay in place (read_segments(root, all_takes=True)). Each step is logged "
        "(episode_retake_started, episode_retake_committed).",
    )
    retake.add_argument("root", type=Path)
    retake.add_argument("episode", type=int)
    retake.add_argument("--camera", action="append", help="camera key (repeat; default: every camera with a new take)")
    retake.set_defaults(func=_cmd_retake)

    compact = commands.add_parser(
        "compact",
        help="give back the dead space appends left in chunk files",
        description="Rewrite chunk files without the old movie boxes each append leaves as free space "
        "(robovid-watch does this by itself for a file it has finished, past 10% dead space). PATH is a "
        "chunk file, or a recording root: every videos/*/chunk-*/file-*.mp4 but each camera's last file, "
        "which robovid-watch may still be appending to, and files it has finished (sealed: it compacted them "
        "then, and robovid-ship may have shipped them). Frames and timestamps are unchanged. "
        "Exit 1 if a file could not be compacted.",
    )
    compact.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    compact.add_argument("--min-dead", type=float, default=0.0, help="skip files with a smaller dead share (0-1)")
    compact.set_defaults(func=_cmd_compact)

    merge = commands.add_parser(
        "merge",
        help="merge several robots' roots into one dataset (episodes renumbered, video appended in place)",
        description="Append the committed episodes of each SRC (a robot's recording root, or the prefix robovid-ship "
        "uploaded it to, e.g. s3://bucket/fleet/robot-17) to DEST's chunk files of "
        "the same camera by stream copy (no re-encode, nothing in DEST rewritten) and commit their rows renumbered: "
        "sources in the order given, episodes in index order, after the highest in DEST; the numbering is kept in "
        "DEST/.cache/huggingface/robovid/merge/episodes.json. Then DEST's LeRobot v3 metadata is written. "
        "Idempotent and crash-safe: rerun it after a crash, or to add what the sources recorded since. "
        "A source robovid-watch (or another robovid process) is writing is refused. "
        "Exit 1 if the roots cannot be merged as asked (a source in use, unlike the others, ...).",
    )
    merge.add_argument("dest", type=Path, help="the merged root (created if absent; only merges write it)")
    merge.add_argument(
        "sources",
        nargs="+",
        metavar="SRC",
        help="a robot's recording root, or the prefix robovid-ship uploads it to (s3://...)",
    )
    merge.add_argument(
        "--task", default=None, help="LeRobot task of every merged episode (default: each keeps its source's)"
    )
    merge.add_argument(
        "--file-size-mb", type=float, default=200.0, help="start a new DEST file past this size (default: 200)"
    )
    merge.add_argument("--no-progress", action="store_true", help="no progress bar")
    merge.set_defaults(func=_cmd_merge)

    simulate = commands.add_parser(
        "simulate",
        help="write synthetic episodes the way a recorder does",
        description="Write camera episodes (natural-looking moving frames) under ROOT/images, one frame per "
        "camera every 1/fps seconds, and the completion marker after each episode's last frame.",
    )
    simulate.add_argument("root", type=Path)
    simulate.add_argument("--cameras", default="front,wrist", help="comma-separated camera keys (default: front,wrist)")
    simulate.add_argument("--episodes", type=int, default=4, help="episodes to record (default: 4)")
    simulate.add_argument("--frames", type=int, default=90, help="frames per episode (default: 90)")
    simulate.add_argument("--fps", type=int, default=30, help="frames per second (default: 30)")
    simulate.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default: 640x480)")
    simulate.add_argument("--start-episode", type=int, default=0, help="index of the first episode (default: 0)")
    simulate.add_argument("--fast", action="store_true", help="write as fast as possible instead of in real time")
    simulate.set_defaults(func=_cmd_simulate)
    return parser


def _cmd_process(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .config import load_settings
    from .errors import EXIT_CONFIG, EXIT_LOCKED, ConfigError, MetadataError, RootLockedError, RootReplacedError
    from .logs import configure_logging
    from .service import Service

    overrides: dict[str, Any] = {"root": args.root}
    offload = None
    if args.ray is not None:
        from .errors import RemoteTaskError
        from .ray_offload import RayOffload

        try:
            offload = RayOffload(args.ray or None)
        except RemoteTaskError as error:
            print(f"robovid process: {error}", file=sys.stderr)
            return EXIT_CONFIG
        overrides["workers"] = min(64, offload.cpus)
    if args.workers is not None:
        overrides["workers"] = args.workers
    try:
        settings = load_settings(**overrides)
    except ConfigError as error:
        print(f"robovid process: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_format if settings.log_format != "auto" else "console")
    bar = tqdm(desc="episodes", unit="ep", disable=args.no_progress or None)

    def on_progress(_ref: Any, status: str) -> None:
        bar.update(1)
        bar.set_postfix_str(status)

    service = Service(settings, once=True, on_progress=on_progress, offload=offload)
    try:
        service.run()
    except RootLockedError as error:
        print(f"robovid process: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except (MetadataError, RootReplacedError) as error:
        print(f"robovid process: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    finally:
        bar.close()
        if offload is not None:
            offload.close()
    counters = service.counters
    print(f"done {counters.done}, failed {counters.failed}, cleaned {counters.cleaned}")
    return EXIT_PROBLEMS if counters.failed else 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import run_convert
    from .logs import configure_logging

    configure_logging("console")
    return run_convert(args.src, args.dest, args.ray, args.workers)


def _cmd_verify(args: argparse.Namespace) -> int:
    from robovid.errors import RemoteError
    from robovid.remote import as_root
    from robovid.verify import verify_root

    from .ship.journal import ShipJournal

    root = as_root(args.root)
    pruned = [] if isinstance(root, str) else [r.path(root) for r in ShipJournal(root).records() if r.state == "pruned"]
    try:
        problems, checked = verify_root(root, backend=args.backend, shipped=pruned, remote=args.remote)
    except RemoteError as error:
        print(f"robovid verify: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    if args.json:
        report: dict[str, Any] = {"checked": checked, "problems": problems}
        if pruned:
            report["shipped_files"] = len(pruned)
        print(json.dumps(report, indent=2))
    else:
        for problem in problems:
            episode = problem["episode_index"]
            where = f"episode {episode}" if episode is not None else "chunk"
            print(f"PROBLEM {problem['video_key']!r} {where}: {problem['problem']}")
        print(f"{checked} segments checked, {len(problems)} problems")
        if pruned:
            where = f"their segments checked in {args.remote}" if args.remote else "their segments not checked"
            print(f"{len(pruned)} chunk file(s) shipped by robovid-ship and deleted here: {where}")
    return EXIT_PROBLEMS if problems else 0


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
    print(
        f"last hour: {report['recorded_s_last_hour']:.0f} s of recording (all cameras) processed in "
        f"{report['busy_s_last_hour']:.0f} s of busy time: real-time factor {report['realtime_factor_last_hour']:.2f} "
        "(>= 1 keeps up with the recorder)"
    )
    return 0


def status_report(root: Path) -> dict[str, Any]:
    """Counts for `robovid status` (also used by tests)."""
    from robovid.metadata import read_segments

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
    failures = [vars(f) for f in RootState(root, read_only=True).failures()]
    return {
        "done": len(rows),
        "recorded_s_done": sum(r["num_frames"] / r["fps"] for r in rows),
        "pending": pending,
        "pending_png_mb": pending_bytes / 1e6,
        "kept_in_committed_folders": kept,
        "unreadable": unreadable,
        "failed": failures,
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


def _cmd_info(args: argparse.Namespace) -> int:
    from robovid.append import count_frames
    from robovid.errors import RobovidError
    from robovid.probe import get_video_duration_in_s, get_video_info

    if not args.file.is_file():
        print(f"robovid info: {args.file}: no such file", file=sys.stderr)
        return EXIT_PROBLEMS
    try:
        info: dict[str, Any] = get_video_info(args.file)
        info["duration_s"] = get_video_duration_in_s(args.file)
        info["frames"] = count_frames(args.file)
    except (RobovidError, OSError) as error:
        print(f"robovid info: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(json.dumps(info, indent=2))
    return 0


def _cmd_lerobot(args: argparse.Namespace) -> int:
    from .config import load_settings
    from .errors import EXIT_CONFIG, EXIT_LOCKED, ConfigError, RootLockedError
    from .lerobot import sync_lerobot_once
    from .logs import configure_logging

    overrides: dict[str, Any] = {"root": args.root}
    if args.task is not None:
        overrides["lerobot_task"] = args.task
    try:
        settings = load_settings(**overrides)
    except ConfigError as error:
        print(f"robovid lerobot: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_format if settings.log_format != "auto" else "console")
    try:
        result = sync_lerobot_once(settings)
    except RootLockedError as error:
        print(f"robovid lerobot: {error}", file=sys.stderr)
        return EXIT_LOCKED
    print(("complete: " if result.complete else "incomplete: ") + result.detail)
    return 0 if result.complete else EXIT_PROBLEMS


def _cmd_retake(args: argparse.Namespace) -> int:
    from robovid.layout import episode_dir
    from robovid.metadata import SegmentStore

    from .state import RetakeRequest, RootState

    takes = SegmentStore(args.root).takes()
    committed = sorted(camera for camera, episode in takes if episode == args.episode)
    cameras = args.camera or [c for c in committed if episode_dir(args.root, c, args.episode).is_dir()]
    code = 0
    for camera in cameras:
        key = (camera, args.episode)
        if key not in takes:
            print(f"robovid retake: episode {args.episode} of camera {camera!r} is not committed; nothing to replace")
            code = EXIT_PROBLEMS
        elif not episode_dir(args.root, camera, args.episode).is_dir():
            print(f"robovid retake: {episode_dir(args.root, camera, args.episode)} holds no new take")
            code = EXIT_PROBLEMS
        else:
            RootState(args.root).request_retake(RetakeRequest(camera, args.episode, takes[key], time.time()))
            print(f"re-take of episode {args.episode}, camera {camera!r}, asked for (replaces take {takes[key]})")
    if not cameras:
        print(f"robovid retake: no committed camera of episode {args.episode} has a new take in its folder")
        code = EXIT_PROBLEMS
    return code


def _cmd_compact(args: argparse.Namespace) -> int:
    from robovid.layout import list_cameras, list_chunks

    from .errors import EXIT_LOCKED, RootLockedError
    from .state import root_locked

    files: list[Path] = []
    roots: set[Path] = set()
    for path in args.paths:
        if not path.is_dir():
            files.append(path)
            continue
        roots.add(path.absolute())
        for camera in list_cameras(path):
            files += [location.path(path, camera) for location in list_chunks(path, camera)][:-1]  # the last may grow
    roots |= {root for root in map(_root_of_chunk, files) if root is not None}
    with contextlib.ExitStack() as locks:
        try:
            for root in sorted(roots):  # the same lock robovid-watch holds: one writer per root
                locks.enter_context(root_locked(root))
        except RootLockedError as error:
            print(f"robovid compact: {error}", file=sys.stderr)
            return EXIT_LOCKED
        return _compact_files(files, args.min_dead)


def _root_of_chunk(path: Path) -> Path | None:
    """The recording root of ``{root}/videos/{camera}/chunk-CCC/file-FFF.mp4``, else None (a loose file)."""
    from robovid.layout import CHUNK_DIR_RE, FILE_RE

    parts = path.absolute().parts
    if (
        len(parts) >= 5
        and parts[-5:][1] == "videos"
        and CHUNK_DIR_RE.fullmatch(parts[-2])
        and FILE_RE.fullmatch(parts[-1])
    ):
        root = path.absolute().parents[3]
        return root if root.is_dir() else None
    return None


def _compact_files(files: list[Path], min_dead: float) -> int:
    from robovid.compact import chunk_space, compact_chunk
    from robovid.errors import RobovidError

    code, freed = 0, 0
    for file in files:
        if _is_sealed(file):
            print(f"{file}: finished by robovid-watch (sealed; robovid-ship may have shipped it), left as it is")
            continue
        try:
            space = chunk_space(file)
            if space.dead_bytes == 0 or space.dead_share < min_dead:
                print(f"{file}: {space.dead_share:.1%} dead, left as it is")
                continue
            compact_chunk(file)
        except (RobovidError, OSError) as error:
            print(f"robovid compact: {file}: {error}", file=sys.stderr)
            code = EXIT_PROBLEMS
            continue
        freed += space.dead_bytes
        print(
            f"{file}: {space.dead_bytes / 1e6:.2f} MB freed ({space.dead_share:.1%} of {space.file_bytes / 1e6:.1f} MB)"
        )
    print(f"{len(files)} file(s), {freed / 1e6:.2f} MB freed")
    return code


def _is_sealed(file: Path) -> bool:
    """A chunk file the service has finished: it compacted it then if needed; it is never rewritten after."""
    from robovid.layout import parse_chunk_path

    from .finished import read_seal

    parsed = parse_chunk_path(file)
    return parsed is not None and read_seal(*parsed) is not None


def _cmd_merge(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from robovid.errors import RobovidError
    from robovid.merge import merge_roots

    bar = tqdm(desc="merging", unit="frame", disable=args.no_progress or None)

    def on_progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        report = merge_roots(
            args.dest, args.sources, task=args.task, file_size_mb=args.file_size_mb, progress=on_progress
        )
    except (RobovidError, OSError) as error:
        print(f"robovid merge: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    finally:
        bar.close()
    for waiting in report.waiting:
        print(f"not merged yet: {waiting}")
    print(
        f"{report.rows_committed} segment row(s) committed in {report.appends} append(s) "
        f"({report.frames_appended} frames), {report.recovered} interrupted append(s) finished; "
        f"{args.dest} holds {report.lerobot_episodes} LeRobot episode(s)"
    )
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from robovid.synthetic import simulate_recorder

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"robovid simulate: --size {args.size!r} is not WIDTHxHEIGHT (e.g. 640x480)", file=sys.stderr)
        return EXIT_USAGE
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
    started = time.monotonic()
    simulate_recorder(
        args.root,
        cameras,
        num_episodes=args.episodes,
        num_frames=args.frames,
        fps=args.fps,
        width=width,
        height=height,
        realtime=not args.fast,
        start_episode=args.start_episode,
        on_episode=lambda e: print(f"recorded episode {e} ({len(cameras)} cameras)", flush=True),
    )
    print(f"recorded {args.episodes} episodes in {time.monotonic() - started:.1f} s under {args.root}/images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
