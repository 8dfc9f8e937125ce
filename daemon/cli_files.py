"""`robovid compact` and `merge`: commands that write a root's chunk files outside the service.

`compact` takes the root's lock (the one robovid-watch holds) and leaves sealed files alone;
`merge` appends other roots' episodes to a destination root by stream copy.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from .errors import EXIT_FAILURE as EXIT_PROBLEMS


def add_compact(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def add_merge(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
