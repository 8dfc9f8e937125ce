"""``robovid verify --repair``: rebuild lost segment rows from the identity records in the chunk files.

Every append robovid-watch and ``robovid merge`` make writes, in the same commit as the samples,
a record of whose samples they are (:mod:`robovid._records`): episode, camera, take, first frame,
frame count, a fingerprint of the samples and the rest of the episode's row. When rows are lost
(the segment table or a part of it deleted, or moved aside because it was unreadable), their
frames stay in the chunk files, claimed by no row. :func:`repair_root` finds each such run and
commits its row again, placed from the file's own sample table like the service places it.

- It holds the root lock robovid-watch holds (flock on the root folder): it never runs beside the
  service, ``robovid process``, ``compact`` or a merge into the root.
- Rows are committed one chunk file at a time, each commit crash-safe
  (:class:`robovid.metadata.SegmentStore`); a rerun finds the rebuilt runs claimed and adds nothing,
  so a kill at any point followed by a rerun rebuilds each row exactly once.
- A run is refused, named with what to do, where the file has no record for it (files written
  before the records existed, or by another tool), where the record does not match the samples
  (fingerprint, frame count, camera, a first frame that is not a keyframe), or where its episode
  already has a row of that take: nothing is guessed and no episode gets two rows.
- LeRobot's metadata (``meta/episodes``, ``meta/info.json``) is not written here: robovid-watch
  builds it from the rows and brings it up to date from the rebuilt ones at its next pass;
  an exported root is exported again by ``robovid lerobot ROOT``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from robovid._faults import fault_point
from robovid._movie import Movie, read_movie
from robovid._records import read_records, sizes_digest
from robovid._root_lock import hold_root_lock
from robovid.durable import is_stale_temp_path, unlink_durably
from robovid.errors import RepairError, RobovidError
from robovid.layout import StrPath, list_cameras, list_chunks, segments_dir
from robovid.metadata import SegmentRow, SegmentStore, read_segments
from robovid.verify import _runs


@dataclass
class RepairReport:
    """What :func:`repair_root` did."""

    rebuilt: list[dict[str, Any]] = field(default_factory=list)
    """One entry per row committed again: ``video_key``, ``episode_index``, ``take``, ``chunk``, ``first_frame``,
    ``num_frames``."""
    refused: list[str] = field(default_factory=list)
    """One message per run of unclaimed frames that was left as it is: which file, which frames, why, what to do."""
    claimed_runs: int = 0
    """Records whose frames a row already claims (nothing to do)."""


def repair_root(root: StrPath) -> RepairReport:
    """Commit again the rows of every run of chunk frames no row claims, from the file's identity records.

    Raises :class:`RepairError` while another robovid process holds the root, and
    MetadataError when a part of the segment table is unreadable (move it aside first).
    """
    root = Path(root)
    report = RepairReport()
    with _root_lock(root):
        _clear_stale_parts(root)
        rows = read_segments(root, all_takes=True).to_pylist()
        keys = {(r["video_key"], r["episode_index"], r["take"]) for r in rows}
        claimed: dict[tuple[str, int, int], set[int]] = {}
        for r in rows:
            frames = claimed.setdefault((r["video_key"], r["chunk_index"], r["file_index"]), set())
            frames.update(range(r["first_frame"], r["first_frame"] + r["num_frames"]))
        store = SegmentStore(root)
        for camera in list_cameras(root):
            for location in list_chunks(root, camera):
                path = location.path(root, camera)
                taken = claimed.get((camera, location.chunk_index, location.file_index), set())
                new = _rebuild_file(path, camera, location.chunk_index, location.file_index, taken, keys, report)
                if new:
                    fault_point("repair:before-commit")
                    store.commit(new)
                    fault_point("repair:after-commit")
                    report.rebuilt += [_summary(row, path) for row in new]
    return report


def _clear_stale_parts(root: Path) -> None:
    """Temp files a killed commit left in the segment table's folder (a kill of an earlier repair, say)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        unlink_durably([Path(e.path) for e in os.scandir(segments_dir(root)) if is_stale_temp_path(Path(e.path))])


def _rebuild_file(
    path: Path,
    camera: str,
    chunk_index: int,
    file_index: int,
    taken: set[int],
    keys: set[tuple[str, int, int]],
    report: RepairReport,
) -> list[SegmentRow]:
    """The rows to commit for the unclaimed runs of one chunk file; refusals go to ``report``."""
    try:
        movie = read_movie(path)
    except (RobovidError, OSError) as error:
        if not taken:
            report.refused.append(f"{path}: unreadable ({type(error).__name__}: {error}); no row was rebuilt from it.")
        return []
    free = sorted(set(range(movie.num_frames)) - taken)
    if not free:
        report.claimed_runs += len(read_records(movie))
        return []
    records = {int(e["first_frame"]): e for e in read_records(movie)}
    report.claimed_runs += sum(1 for first in records if first in taken)
    rows = []
    for first, last in _runs(free):
        position = first
        while position <= last:
            entry = records.get(position)
            problem = _problem(movie, camera, entry, position, last, keys) if entry is not None else None
            if entry is None or problem is not None:
                report.refused.append(_refusal(path, position, last, problem))
                break
            row = _placed(movie, SegmentRow.from_json(entry["row"]), chunk_index, file_index, position)
            keys.add((row.video_key, row.episode_index, row.take))
            rows.append(row)
            position += row.num_frames
    return rows


def _problem(
    movie: Movie, camera: str, entry: dict[str, Any], first: int, last: int, keys: set[tuple[str, int, int]]
) -> str | None:
    """Why the record of the run starting at ``first`` cannot be trusted or used, else None."""
    count = int(entry["num_frames"])
    if count < 1 or first + count - 1 > last:
        return f"its record says {count} frames from {first}, but frames up to {last} only are claimed by no row"
    if entry["sizes_sha256"] != sizes_digest(movie.table.sizes[first : first + count]):
        return (
            "its record does not match the samples there (fingerprint differs: the file was rewritten by another tool?)"
        )
    try:
        row = SegmentRow.from_json(entry["row"])
    except (TypeError, ValueError, KeyError) as error:
        return f"its record holds no usable row ({type(error).__name__}: {error})"
    if row.video_key != camera or row.num_frames != count:
        return f"its record names camera {row.video_key!r} with {row.num_frames} frames (file: camera {camera!r})"
    sync = movie.table.sync_samples
    if sync is not None and first + 1 not in set(sync.tolist()):
        return f"frame {first} is not a keyframe, so no episode starts there"
    if (row.video_key, row.episode_index, row.take) in keys:
        return (
            f"episode {row.episode_index} (take {row.take}) of camera {camera!r} already has a row, which stays: "
            "these frames are an older copy of it"
        )
    return None


def _refusal(path: Path, first: int, last: int, problem: str | None) -> str:
    what = f"{path}: frames {first}..{last} (claimed by no row)"
    if problem is None:
        return (
            f"{what} carry no identity record (written before robovid recorded them, or by another tool): their "
            "episode cannot be told from the file. Restore the segment table from a backup to get their rows back."
        )
    return f"{what}: {problem}. Nothing was rebuilt there; restore the segment table from a backup if it held them."


def _placed(movie: Movie, row: SegmentRow, chunk_index: int, file_index: int, first: int) -> SegmentRow:
    segment = movie.segment(first, row.num_frames)
    return row.placed(
        chunk_index=chunk_index,
        file_index=file_index,
        from_timestamp=segment.from_timestamp,
        to_timestamp=segment.to_timestamp,
        first_frame=first,
        committed_at=row.committed_at or datetime.now(UTC),
    )


def _summary(row: SegmentRow, path: Path) -> dict[str, Any]:
    return {
        "video_key": row.video_key,
        "episode_index": row.episode_index,
        "take": row.take,
        "chunk": str(path),
        "first_frame": row.first_frame,
        "num_frames": row.num_frames,
    }


@contextlib.contextmanager
def _root_lock(root: Path) -> Iterator[None]:
    """The lock robovid-watch holds on the root folder (flock), taken without waiting."""

    def refuse(holder: str) -> RepairError:
        return RepairError(
            f"{root} is in use by another robovid process (pid {holder}: robovid-watch, robovid process, "
            "compact or merge). Rows are rebuilt only while nothing writes the root: stop it "
            "(systemctl stop robovid-watch), then run `robovid verify --repair` again."
        )

    def missing() -> RepairError:
        return RepairError(f"{root}: no such folder. Name a recording root.")

    with hold_root_lock(root, exclusive=True, refuse=refuse, missing=missing):
        yield
