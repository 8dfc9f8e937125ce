"""``robovid``: the command line for people at a terminal (the service's side: ``process`` runs its pipeline).

robovid process ROOT     drain the backlog once (progress bar), then exit; --ray: encode on a Ray cluster
robovid convert SRC DEST a LeRobot v2.1 archive of episode MP4s into chunk files (--ray: re-encodes on Ray)
robovid verify ROOT      decode every segment's first and last frame via the metadata; --repair: rebuild lost rows
robovid status ROOT      pending, failed and done episodes; throughput of the last hour
robovid info FILE        probe a video file
robovid merge DEST SRC.. merge robots' roots into one dataset
robovid simulate ROOT    write episodes the way a recorder does (for demos and tests)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import cli_files, cli_pipeline, cli_status
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

    cli_pipeline.add_process(commands)
    cli_pipeline.add_convert(commands)

    verify = commands.add_parser(
        "verify",
        help="decode each segment's first and last frame through the metadata",
        description="For every row of ROOT/.cache/huggingface/robovid/segments: the chunk file exists, holds the segment's "
        "frames, and its first and last frames decode at their timestamps; chunk frames no row claims are reported. "
        "With --repair (robovid-watch stopped), the rows of such frames are first committed again from the identity "
        "record each append writes into the chunk file; frames without one are named. Exit 1 on any problem.",
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
    verify.add_argument(
        "--repair",
        action="store_true",
        help="first commit again the rows of chunk frames no row claims, from the identity record each append "
        "writes into the chunk file (stop robovid-watch first; files written before robovid 2026-12 have none)",
    )
    verify.set_defaults(func=_cmd_verify)

    cli_status.add_status(commands)

    info = commands.add_parser("info", help="probe a video file (codec, size, fps, frames, encoder settings)")
    info.add_argument("file", type=Path)
    info.set_defaults(func=_cmd_info)

    cli_pipeline.add_lerobot(commands)

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

    cli_files.add_compact(commands)
    cli_files.add_merge(commands)

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


def _cmd_verify(args: argparse.Namespace) -> int:
    from robovid.errors import RemoteError
    from robovid.remote import as_root
    from robovid.verify import verify_root

    from .ship.journal import ShipJournal

    root = as_root(args.root)
    repaired: dict[str, Any] = {}
    if args.repair:
        from .repair_cli import run_repair

        status, repaired = run_repair(root, args.json)
        if not repaired:
            return status
    pruned = [] if isinstance(root, str) else [r.path(root) for r in ShipJournal(root).records() if r.state == "pruned"]
    try:
        problems, checked = verify_root(root, backend=args.backend, shipped=pruned, remote=args.remote)
    except RemoteError as error:
        print(f"robovid verify: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    if args.json:
        report: dict[str, Any] = {"checked": checked, "problems": problems} | ({"repair": repaired} if repaired else {})
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
