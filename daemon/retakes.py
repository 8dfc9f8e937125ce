"""Re-takes: a committed episode's folder recorded again is refused, unless a user asks for it.

``robovid retake ROOT N`` writes a durable request naming the take it replaces (the committed
one). The service then encodes the folder as the episode's next take: appended as a new segment,
committed as a new row with ``take`` one higher, its PNGs freed. The earlier take's row and its
frames in the chunk file stay (``read_segments(root, all_takes=True)``); readers see the highest
take. Without a request, or with one for a take that is no longer the committed one, the folder
fails with :class:`~robovid_watch.errors.DuplicateEpisodeError` naming the command, its PNGs kept.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from robovid.metadata import SegmentRow

from .discover import EpisodeRef
from .errors import DuplicateEpisodeError
from .state import RetakeRequest, RootState

log = structlog.get_logger("robovid_watch")

Key = tuple[str, int]


def is_due(takes: dict[Key, int], key: Key, request: RetakeRequest | None) -> bool:
    """A re-take was asked for, and the take it replaces is still the committed one."""
    return request is not None and takes.get(key, 0) == request.replaces_take


def answer(state: RootState, takes: dict[Key, int], key: Key, request: RetakeRequest | None) -> None:
    """Once the re-take is committed (a higher take is), its request is removed."""
    if request is not None and takes.get(key, 0) > request.replaces_take:
        state.clear_retake(*key)


def log_started(camera: str, episode: int, request: RetakeRequest) -> None:
    log.info(
        "episode_retake_started",
        camera=camera,
        episode=episode,
        replaces_take=request.replaces_take,
        detail="the committed take stays (its row and frames) until the new one is committed, and after",
    )


def log_committed(row: SegmentRow) -> None:
    if row.take > 0:
        log.info(
            "episode_retake_committed",
            camera=row.video_key,
            episode=row.episode_index,
            take=row.take,
            chunk_index=row.chunk_index,
            file_index=row.file_index,
            from_timestamp=row.from_timestamp,
            kept="the earlier takes' rows (read_segments(all_takes=True)) and their frames in their chunk files",
        )


def duplicate_error(root: Path, ref: EpisodeRef, take: int, stale: RetakeRequest | None) -> DuplicateEpisodeError:
    """The error of a committed episode's folder recorded again, naming the command that makes it the next take."""
    outdated = (
        f" (a re-take was asked for take {stale.replaces_take}, but take {take} is committed now; ask again)"
        if stale is not None
        else ""
    )
    return DuplicateEpisodeError(
        f"episode {ref.episode} of camera {ref.camera!r} is already in the video metadata; this folder was "
        f"recorded again with the same index and is not deleted{outdated}. To make it the episode's new take "
        f"(the committed one is kept, row and frames): robovid retake {root} {ref.episode} --camera {ref.camera!r}"
    )
