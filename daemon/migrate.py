"""Move robovid's state from its old place in a root to the new one, crash-safely.

Until robovid 0.1.0's LeRobot support, a root kept robovid's state in ``{root}/.robovid/``
(lock, journal, failures, temp encodes) and the segment table in ``{root}/meta/robovid/segments/``,
where ``LeRobotDataset.push_to_hub`` (huggingface_hub's ``upload_folder``) uploads both. Both now
live in :func:`robovid.layout.state_dir`. The service moves them at start, under the root lock:

1. every entry of the old state folder but its lock and temp encodes (``journal/``, ``failed/``,
   and whatever else lives there, such as robovid-ship's ``sealed/`` and ``ship/``), then the
   segment table, is renamed into the new place in one ``rename`` when the new one does not
   exist yet, else entry by entry (a ``rename`` each); every rename is followed by an fsync of
   both directories;
2. then the old temp encodes, the old lock file and the emptied old folders are removed.

Every step is a rename or a removal of something already moved, so a kill at any point leaves
each file in exactly one of the two places, and the next start finishes the move. Readers
(:func:`robovid.layout.segments_dir`) look in the new place first, then the old one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import structlog

from robovid._faults import fault_point
from robovid.durable import fsync_dir, make_dirs_durably, unlink_durably
from robovid.errors import MetadataError
from robovid.layout import legacy_segments_dir, legacy_state_dir, state_dir

log = structlog.get_logger("robovid_watch")

LEFT_BEHIND = ("lock", "tmp")
"""Entries of the old state folder that are not moved: its lock (held until the move is done) and temp encodes."""


def migrate_state(root: Path) -> list[str]:
    """Move an old root's state to the new place; what was moved (empty for a new root). Hold the root lock."""
    moved = []
    old_state = legacy_state_dir(root)
    for name in _entries(old_state):
        if name in LEFT_BEHIND:
            continue
        if _move(old_state / name, state_dir(root) / name):
            moved.append(f".robovid/{name}")
        fault_point(f"migrate:after-{name}")
    if _move(legacy_segments_dir(root), state_dir(root) / "segments"):
        moved.append("meta/robovid/segments")
    fault_point("migrate:after-segments")
    _remove_old(root)
    if moved:
        log.info("state_moved", root=str(root), moved=moved, to=str(state_dir(root)))
    return moved


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _move(source: Path, target: Path) -> bool:
    """Rename ``source`` to ``target``, or a folder's entries into an existing ``target``; True if anything moved."""
    if not source.exists() and not source.is_symlink():
        return False
    make_dirs_durably(target.parent)
    if not target.exists():
        os.rename(source, target)
        fsync_dir(source.parent)
        fsync_dir(target.parent)
        return True
    if not source.is_dir() or not target.is_dir():
        raise MetadataError(
            f"{source} and {target} both exist: robovid's state is in two places. Compare them, keep the right "
            f"one at {target} and remove the other, then start robovid again."
        )
    moved = False
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        destination = target / entry.name
        if destination.exists():
            raise MetadataError(
                f"{entry.path} and {destination} both exist: robovid's state is in two places. Compare them, keep "
                f"the right one in {target} and remove the other, then start robovid again."
            )
        os.rename(entry.path, destination)
        fsync_dir(source)
        fsync_dir(target)
        moved = True
    return moved


def _remove_old(root: Path) -> None:
    """The old temp encodes, lock file and emptied folders (after everything else moved)."""
    old_state = legacy_state_dir(root)
    tmp = old_state / "tmp"
    if tmp.is_dir():
        unlink_durably([Path(e.path) for e in os.scandir(tmp) if e.is_file(follow_symlinks=False)])
    for name in _entries(old_state):
        if (old_state / name).is_dir() and not (old_state / name).is_symlink():
            _rmdir(old_state / name)  # moved folders emptied entry by entry, and tmp/
    _rmdir(legacy_segments_dir(root))
    if (old_state / "lock").exists():
        unlink_durably([old_state / "lock"])
    _rmdir(old_state)
    _rmdir(legacy_segments_dir(root).parent)


def _rmdir(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError, OSError):
        folder.rmdir()
        fsync_dir(folder.parent)
