"""Which chunk file an episode goes to, and giving back the dead space of a file the service has finished.

A camera's episodes are appended to its last chunk file until the next one would pass
``ROBOVID_VIDEO_FILE_SIZE_MB``; then a new file starts (and a new ``chunk-NNN`` folder every
``ROBOVID_CHUNK_SIZE`` files). When a new file starts, the one before it is finished: if
appends left more than :data:`COMPACT_ABOVE` of it as dead space (old movie boxes, see
:mod:`robovid.compact`), it is rewritten without them. Called by the append stage
(:func:`robovid_watch.stages.append`) with the camera's lock held.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import structlog

from robovid.compact import chunk_space, compact_chunk
from robovid.errors import RobovidError
from robovid.layout import ChunkLocation, list_chunks

log = structlog.get_logger("robovid_watch")

COMPACT_ABOVE = 0.10
"""A finished chunk file with more than this share of dead space (old movie boxes) is compacted."""


def current_chunk(
    root: Path, camera: str, incoming_bytes: int, file_size_limit_bytes: int, files_per_chunk: int
) -> ChunkLocation:
    """The file to append to: the camera's last one, or the next when this would pass the size limit."""
    chunks = list_chunks(root, camera)
    if not chunks:
        return ChunkLocation(0, 0)
    last = chunks[-1]
    size = last.path(root, camera).stat().st_size
    if size > 0 and size + incoming_bytes > file_size_limit_bytes:
        return last.next(files_per_chunk)
    return last


def location_of(root: Path, camera: str, path: Path) -> ChunkLocation:
    """The location of one of the camera's chunk files; FileNotFoundError if ``path`` is not one."""
    for location in list_chunks(root, camera):
        if location.path(root, camera) == path:
            return location
    raise FileNotFoundError(f"{path} is not a chunk file of camera {camera!r}.")


def log_chunk_skipped(path: Path, error: Exception) -> None:
    """A chunk file that cannot be read or appended to is left as it is; the episode goes to a new file."""
    log.error(
        "chunk_skipped",
        chunk=str(path),
        detail=str(error),
        action="starting a new chunk file; the skipped file is left untouched for inspection",
    )


def compact_previous(root: Path, camera: str, location: ChunkLocation) -> None:
    """When a new file is about to start at ``location``, give back the dead space appends left in the one before it.

    Only past COMPACT_ABOVE dead space (old movie boxes), and only with room for a full copy
    beside it. A failure costs nothing but the space: the file stays as it was, and is logged.
    """
    if location.path(root, camera).exists():
        return
    earlier = [c for c in list_chunks(root, camera) if c < location]
    if not earlier:
        return
    path = earlier[-1].path(root, camera)
    try:
        space = chunk_space(path)
        if space.dead_share <= COMPACT_ABOVE:
            return
        if shutil.disk_usage(path.parent).free < 2 * space.file_bytes:
            log.info("chunk_not_compacted", chunk=str(path), reason="not enough free space for a copy")
            return
        started = time.monotonic()
        compact_chunk(path)
    except (RobovidError, OSError, EOFError) as error:  # EOFError: a sample run past the end of the file
        log.warning(
            "chunk_not_compacted",
            chunk=str(path),
            detail=str(error),
            action="nothing to do: the file is complete and readable, it only keeps its dead space",
        )
        return
    log.info(
        "chunk_compacted",
        chunk=str(path),
        bytes_before=space.file_bytes,
        bytes_freed=space.dead_bytes,
        seconds=round(time.monotonic() - started, 3),
    )
