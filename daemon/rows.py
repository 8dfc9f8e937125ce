"""Stage 6, commit: the episode's durable metadata row; checked before the append, taken back if it fails.

A row that could never be stored (an episode index past int64, a camera key that is not UTF-8)
would leave an appended episode with no row, and every later attempt to commit it would fail the
same way: the camera stopped for good and every restart exited 1. So the row is built and
checked against the table's schema before the chunk is touched (:func:`check_storable`), and
if a commit still fails for any reason but a full disk, the append is taken back
(:func:`undo_uncommitted`): the episode fails alone with a :class:`CommitFailedError` that blames the disk
or the metadata, not the frames (:func:`commit_or_undo`), its PNGs kept. A full disk and an unreadable
segment table keep the intent instead (:func:`commit_can_wait`).
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import structlog

from robovid.append import VideoSegment, undo_append
from robovid.errors import MetadataError, RobovidError
from robovid.layout import MAX_EPISODE_INDEX, existing_segments_dir
from robovid.metadata import SEGMENT_SCHEMA, SegmentRow

from . import retakes
from .chunks import location_of
from .discover import EpisodeRef
from .errors import CommitFailedError, RowNotStorableError
from .health import is_disk_full

if TYPE_CHECKING:
    from .stages import Context

log = structlog.get_logger("robovid_watch")


def commit(ctx: Context, ref: EpisodeRef, segment: VideoSegment, row: SegmentRow) -> None:
    """Stage 6: the durable metadata row; after this the episode is done."""
    location = location_of(ctx.root, ref.camera, segment.path)
    placed = row.placed(
        chunk_index=location.chunk_index,
        file_index=location.file_index,
        from_timestamp=segment.from_timestamp,
        to_timestamp=segment.to_timestamp,
        first_frame=segment.first_frame,
        committed_at=datetime.now(UTC),
    )
    ctx.store.commit([placed])
    ctx.done.add((ref.camera, ref.episode))
    ctx.takes[(ref.camera, ref.episode)] = placed.take
    retakes.log_committed(placed)
    ctx.last_in_rows[ref.camera] = max(location, ctx.last_in_rows.get(ref.camera, location))


def check_storable(row: SegmentRow) -> None:
    """RowNotStorableError unless the row, once placed, fits the segment table's schema (checked before the append)."""
    if not 0 <= row.episode_index <= MAX_EPISODE_INDEX:
        raise RowNotStorableError(
            f"episode index {row.episode_index} is outside what the episode_index column holds (0 to "
            f"{MAX_EPISODE_INDEX}): rename the folder with a smaller index (episode-NNNNNN)."
        )
    probe = row.placed(
        chunk_index=0, file_index=0, from_timestamp=0.0, to_timestamp=0.0, first_frame=0, committed_at=datetime.now(UTC)
    )
    try:
        pa.Table.from_pylist([probe.to_record()], schema=SEGMENT_SCHEMA)
    except (pa.ArrowException, OverflowError, TypeError, ValueError, UnicodeError) as error:
        raise RowNotStorableError(
            f"the metadata row of episode {row.episode_index} of camera {row.video_key!r} cannot be stored ({error}); "
            "its PNGs were kept: rename the camera or episode folder"
        ) from error


def commit_can_wait(error: BaseException) -> bool:
    """The row can be committed later exactly as it is: once space is freed, or the unreadable segment table is
    restored or repaired. The intent is then kept. On MetadataError the service stops with exit 65 rather than
    fail every episode after it (:meth:`robovid_watch.service.Service._finish`, as at start), and the next start
    commits the row from the intent once the table reads again."""
    return is_disk_full(error) or isinstance(error, MetadataError)


def undo_uncommitted(ctx: Context, camera: str, episode: int, segment: VideoSegment, error: BaseException) -> bool:
    """The row of an appended episode could not be committed: take the append back and forget the intent.

    The episode's PNGs are all still there (nothing is deleted before the commit), so it fails alone with
    a clear event; the camera's later episodes, the other cameras and a restart go on. True if the append
    was taken back (False: its frames stay in the chunk file, claimed by no row; ``append_not_undone`` says so).
    """
    try:
        undo_append(segment)
    except (OSError, RobovidError) as undo_error:
        undone, event = False, "append_not_undone"
        detail = f"{type(error).__name__}: {error}; undo failed: {undo_error}"
        action = (
            f"the PNGs were kept; frames {segment.first_frame}..{segment.first_frame + segment.num_frames - 1} "
            "of the chunk file belong to no row (robovid verify reports them)"
        )
    else:
        undone, event = True, "append_undone"
        detail = f"{type(error).__name__}: {error}"
        action = "the row could not be committed, so the append was taken back; the PNGs were kept"
    log.error(event, camera=camera, episode=episode, chunk=str(segment.path), detail=detail, action=action)
    ctx.state.clear_intent(camera, episode)
    return undone


def commit_or_undo(ctx: Context, ref: EpisodeRef, segment: VideoSegment, row: SegmentRow) -> None:
    """:func:`commit`; if that fails in a way no wait can fix, take the append back and raise CommitFailedError."""
    try:
        commit(ctx, ref, segment, row)
    except Exception as error:
        if commit_can_wait(error):
            raise
        undone = undo_uncommitted(ctx, ref.camera, ref.episode, segment, error)
        raise _commit_failed(ctx, ref, error, undone) from error


def _commit_failed(ctx: Context, ref: EpisodeRef, error: BaseException, undone: bool) -> CommitFailedError:
    """The episode's failure: the disk or the segment table is at fault, not the frames."""
    root = shlex.quote(str(ctx.root))
    taken_back = "the append was taken back" if undone else "its frames stay in the chunk file, claimed by no row"
    return CommitFailedError(
        f"{ref.path}: the metadata row of episode {ref.episode} of camera {ref.camera!r} could not be committed to "
        f"{existing_segments_dir(ctx.root)} ({type(error).__name__}: {error}). The frames are not at fault: "
        f"{taken_back} and the episode's frames were kept. Check the disk of the root (free space, permissions, I/O "
        f"errors in `dmesg`) and the segment table (`robovid verify {root}`; a damaged part: stop robovid-watch, move "
        f"it aside and run `robovid verify --repair {root}`), then restart robovid-watch or touch a file in the "
        "episode folder to retry."
    )
