"""One append of ``robovid merge`` under its journal intent, the recovery of a killed one, and the root locks.

An intent (``merge/intent-*.json`` in DEST's robovid state) names the DEST file, its frame count
before the append and the rows; the append itself is :func:`robovid.append.append_movie` (crash-safe
alone); the rows are committed; the intent is removed. :func:`recover` resolves what a kill left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from robovid._faults import fault_point
from robovid._movie import Movie, read_movie, slice_movie
from robovid._records import run_entry
from robovid._root_lock import hold_root_lock
from robovid.append import append_movie, recover_chunk
from robovid.durable import is_stale_temp_path, make_dirs_durably, unlink_durably, write_bytes_durably
from robovid.errors import MergeError, MismatchedVideosError
from robovid.layout import (
    ChunkLocation,
    chunk_dirs,
    chunk_path,
    lerobot_dirs,
    list_chunks,
    merge_dir,
    segments_dir,
)
from robovid.metadata import SegmentRow, SegmentStore, read_segments
from robovid.remote import is_url, open_video_file, store_errors

FILES_PER_CHUNK = 1000
"""LeRobot's chunks_size."""


@dataclass(frozen=True)
class Run:
    """Consecutive source rows of one source chunk file, appended together: the journal intent of one append."""

    source: str
    camera: str
    source_file: str
    first: int
    count: int
    rows: list[dict[str, Any]]
    """``SegmentRow.to_json`` of each, renumbered, with its location in the source file."""
    dest_chunk: int = -1
    dest_file: int = -1
    frames_before: int = -1

    def dest_path(self, dest: Path) -> Path:
        return chunk_path(dest, self.camera, self.dest_chunk, self.dest_file)


def append_run(dest: Path, run: Run, file_size_mb: float) -> int:
    """Append one run to its camera's DEST file under a journal intent, commit its rows; rows committed."""
    with store_errors(run.source_file), _source_movie(run) as movie:
        incoming = int(movie.table.sizes.sum())
        target = _current_location(dest, run.camera, incoming, file_size_mb)
        for _attempt in range(3):
            path = target.path(dest, run.camera)
            before = read_movie(path).num_frames if path.exists() else 0
            placed = dataclasses.replace(
                run, dest_chunk=target.chunk_index, dest_file=target.file_index, frames_before=before
            )
            _write_intent(dest, placed)
            fault_point("merge:after-intent")
            try:
                append_movie(path, movie, _run_records(run, movie))
            except MismatchedVideosError:
                _clear_intent(dest, placed)
                target = target.next(FILES_PER_CHUNK)
                continue
            fault_point("merge:after-append")
            return _finish(dest, placed, committed=set())  # planned from the rows DEST lacks: none is in it
    raise MergeError(f"{run.source_file}: no DEST file of camera {run.camera!r} takes its frames by stream copy.")


def _run_records(run: Run, movie: Movie) -> list[dict[str, Any]]:
    """The identity record of each episode of the run, as DEST numbers it (:mod:`robovid._records`)."""
    records = []
    for row in (SegmentRow.from_json(r) for r in run.rows):  # the source's commit time: a rerun writes the same bytes
        records.append(
            run_entry(movie, (row.first_frame or 0) - run.first, row.num_frames, row.identity(row.committed_at))
        )
    return records


@contextlib.contextmanager
def _source_movie(run: Run) -> Iterator[Movie]:
    """The run's frames of its source file (a local path, or a URL read by range requests) as a movie to append."""
    try:
        if not is_url(run.source_file):
            yield slice_movie(read_movie(Path(run.source_file)), run.first, run.count)
            return
        handle, _ = open_video_file(run.source_file)
    except FileNotFoundError:
        raise MergeError(
            f"{run.source_file}: named by the source's segment table but missing (shipped and pruned by robovid-ship?). "
            "Merge the robot's shipped prefix (s3://...) for the episodes that were shipped."
        ) from None
    with handle:
        movie = read_movie(Path(run.source_file), cast(BinaryIO, handle))
        movie.source = cast(BinaryIO, handle)
        yield slice_movie(movie, run.first, run.count)


def _current_location(dest: Path, camera: str, incoming: int, file_size_mb: float) -> ChunkLocation:
    chunks = list_chunks(dest, camera)
    if not chunks:
        return ChunkLocation(0, 0)
    size = chunks[-1].path(dest, camera).stat().st_size
    return chunks[-1].next(FILES_PER_CHUNK) if size > 0 and size + incoming > file_size_mb * 1024 * 1024 else chunks[-1]


def _finish(dest: Path, run: Run, committed: set[tuple[str, int, int]] | None = None) -> int:
    """Commit the run's rows not committed yet, at their place in DEST's file, then remove its intent."""
    movie = read_movie(run.dest_path(dest))
    if committed is None:
        table = read_segments(dest, all_takes=True)
        committed = set(zip(*(table[c].to_pylist() for c in ("video_key", "episode_index", "take")), strict=True))
    now = datetime.now(UTC)
    rows = []
    for row in (SegmentRow.from_json(r) for r in run.rows):
        if (row.video_key, row.episode_index, row.take) in committed:
            continue
        segment = movie.segment(run.frames_before + (row.first_frame or 0) - run.first, row.num_frames)
        rows.append(
            row.placed(
                chunk_index=run.dest_chunk,
                file_index=run.dest_file,
                from_timestamp=segment.from_timestamp,
                to_timestamp=segment.to_timestamp,
                first_frame=segment.first_frame,
                committed_at=now,
            )
        )
    if rows:
        SegmentStore(dest).commit(rows)
    fault_point("merge:after-commit")
    _clear_intent(dest, run)
    return len(rows)


def recover(dest: Path) -> int:
    """Resolve the intents a killed merge left; how many appends it finished."""
    finished = 0
    for intent in sorted(merge_dir(dest).glob("intent-*.json")):
        run = Run(**json.loads(intent.read_text(encoding="utf-8")))
        path = run.dest_path(dest)
        if path.exists():
            recover_chunk(path)
        frames = read_movie(path).num_frames if path.exists() else 0
        if frames == run.frames_before:
            _clear_intent(dest, run)  # the append never happened: planned again
        elif frames == run.frames_before + run.count:
            _finish(dest, run)  # some of its rows may be committed already
            finished += 1
        else:
            raise MergeError(
                f"{path} holds {frames} frames; the merge journal ({intent}) expected {run.frames_before} (before its "
                f"append) or {run.frames_before + run.count} (after). Something other than robovid merge wrote to "
                "DEST: check it with `robovid verify`."
            )
    return finished


def _intent_path(dest: Path, run: Run) -> Path:
    name = f"{run.source}|{run.camera}|{run.source_file}|{run.first}"
    return merge_dir(dest) / f"intent-{hashlib.sha256(name.encode()).hexdigest()[:24]}.json"


def _write_intent(dest: Path, run: Run) -> None:
    write_bytes_durably(_intent_path(dest, run), json.dumps(run.__dict__).encode())


def _clear_intent(dest: Path, run: Run) -> None:
    unlink_durably([_intent_path(dest, run)])


def clear_stale_temp_files(dest: Path) -> None:
    """Temp files a killed run left beside what it was publishing (a new chunk file, a table part, metadata)."""
    stale = []
    for directory in [segments_dir(dest), merge_dir(dest), *chunk_dirs(dest), *lerobot_dirs(dest)]:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            stale += [Path(e.path) for e in os.scandir(directory) if is_stale_temp_path(Path(e.path))]
    unlink_durably(stale)


@contextlib.contextmanager
def root_lock(root: Path, exclusive: bool) -> Iterator[None]:
    """The root lock robovid-watch takes (flock on the root folder): exclusive for DEST, shared for a source."""
    what = "DEST" if exclusive else "a source"

    def refuse(holder: str) -> MergeError:
        return MergeError(
            f"{root} ({what}) is in use by another robovid process (pid {holder}: robovid-watch, robovid process, "
            "compact or another merge). A root being written cannot be merged safely: stop it "
            "(systemctl stop robovid-watch) or wait for it to finish, then run the merge again."
        )

    def missing() -> MergeError:
        return MergeError(f"{root}: no such folder. Name a robot's recording root.")

    with hold_root_lock(root, exclusive=exclusive, refuse=refuse, missing=missing):
        if exclusive:
            make_dirs_durably(merge_dir(root))
        yield
