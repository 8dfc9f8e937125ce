"""`robovid process`, `convert` and `lerobot`: the service's pipeline run once from a terminal (--ray: on a cluster).

Each takes the ROBOVID_* settings (refused with exit 78 naming the variable, as the service is)
and logs to the terminal; `process` and `convert` can move the encoding to Ray tasks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EXIT_FAILURE as EXIT_PROBLEMS

if TYPE_CHECKING:
    from .config import Settings


def add_process(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def add_convert(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def add_lerobot(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _cmd_process(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .errors import EXIT_CONFIG, EXIT_LOCKED, MetadataError, RootLockedError, RootReplacedError
    from .memory import limit_malloc_arenas
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
    settings = _settings_or_exit("process", overrides)
    if settings is None:
        return EXIT_CONFIG
    bar = tqdm(desc="episodes", unit="ep", disable=args.no_progress or None)

    def on_progress(_ref: Any, status: str) -> None:
        bar.update(1)
        bar.set_postfix_str(status)

    limit_malloc_arenas(settings.malloc_arenas)  # before any worker thread exists
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


def _cmd_lerobot(args: argparse.Namespace) -> int:
    from .errors import EXIT_CONFIG, EXIT_LOCKED, RootLockedError
    from .lerobot import sync_lerobot_once

    overrides: dict[str, Any] = {"root": args.root}
    if args.task is not None:
        overrides["lerobot_task"] = args.task
    settings = _settings_or_exit("lerobot", overrides)
    if settings is None:
        return EXIT_CONFIG
    try:
        result = sync_lerobot_once(settings)
    except RootLockedError as error:
        print(f"robovid lerobot: {error}", file=sys.stderr)
        return EXIT_LOCKED
    print(("complete: " if result.complete else "incomplete: ") + result.detail)
    return 0 if result.complete else EXIT_PROBLEMS


def _settings_or_exit(command: str, overrides: dict[str, Any]) -> Settings | None:
    """The ROBOVID_* settings with ``overrides``, logging configured for a terminal; None (said why) when refused."""
    from .config import load_settings
    from .errors import ConfigError
    from .logs import configure_logging

    try:
        settings = load_settings(**overrides)
    except ConfigError as error:
        print(f"robovid {command}: {error}", file=sys.stderr)
        return None
    configure_logging(settings.log_format if settings.log_format != "auto" else "console")
    return settings
