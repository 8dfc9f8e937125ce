"""Which chunk file an episode goes to, and finishing the files the service is done with.

A camera's episodes are appended to its last chunk file until the next one would pass
``ROBOVID_VIDEO_FILE_SIZE_MB``; then a new file starts (and a new ``chunk-NNN`` folder every
``ROBOVID_CHUNK_SIZE`` files). When a new file starts, the one before it is finished
(:func:`finish_file`): if appends left more than :data:`COMPACT_ABOVE` of it as dead space
(old movie boxes, see :mod:`robovid.compact`), it is rewritten without them, then it is
sealed (:mod:`robovid_watch.finished`): the service never writes it again and robovid-ship
may ship it. A file is also sealed when it is skipped (cannot take an episode), at start
when it is not its camera's last, and when it has been idle for ``ROBOVID_SEAL_IDLE_S``.
Called by the append stage (:func:`robovid_watch.stages.append`) with the camera's lock
held, and by the service loop (start, idle).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import structlog

from robovid._faults import fault_point
from robovid.compact import chunk_space, compact_chunk
from robovid.errors import RobovidError
from robovid.layout import CHUNK_DIR_RE, FILE_RE, ChunkLocation, videos_dir

from .finished import idle_last_files, last_location, read_seal, seal, unsealed_before_last
from .state import DamagedIntent

if TYPE_CHECKING:
    from .stages import Context

log = structlog.get_logger("robovid_watch")

COMPACT_ABOVE = 0.10
"""A finished chunk file with more than this share of dead space (old movie boxes) is compacted."""


def current_chunk(
    root: Path,
    camera: str,
    incoming_bytes: int,
    file_size_limit_bytes: int,
    files_per_chunk: int,
    last_in_rows: ChunkLocation | None = None,
) -> ChunkLocation:
    """The file to append to: the camera's last one, or the next when the last is sealed or this would pass
    the size limit (the last is then finished: compacted if needed, and sealed).

    ``last_in_rows``: the camera's last file that committed rows name. When that file is gone
    (moved away, deleted, not a regular file) and not sealed (a sealed file may have been shipped and
    pruned on purpose), the next location after it is used: its name is never given to a new file,
    whose frames its rows would then silently decode.
    """
    last = last_location(root, camera)
    if last_in_rows is not None and (last is None or last < last_in_rows):
        log.warning(
            "chunk_missing",
            camera=camera,
            chunk=str(last_in_rows.path(root, camera)),
            detail="committed rows name this chunk file, but it is not there (moved away or deleted?)",
            action="put it back where it was (robovid verify reports its rows as missing until then); new episodes "
            "go to the next file, so its name is never reused",
        )
        return last_in_rows.next(files_per_chunk)
    if last is None:
        return ChunkLocation(0, 0)
    if read_seal(root, camera, last) is not None:
        return last.next(files_per_chunk)
    size = last.path(root, camera).stat().st_size
    if size > 0 and size + incoming_bytes > file_size_limit_bytes:
        finish_file(root, camera, last, "rollover")
        return last.next(files_per_chunk)
    return last


def last_locations_in_rows(table: pa.Table) -> dict[str, ChunkLocation]:
    """Each camera's last chunk file that the segment rows name."""
    last: dict[str, ChunkLocation] = {}
    for camera, chunk, file in zip(
        table["video_key"].to_pylist(), table["chunk_index"].to_pylist(), table["file_index"].to_pylist(), strict=True
    ):
        location = ChunkLocation(chunk, file)
        if camera not in last or last[camera] < location:
            last[camera] = location
    return last


def location_of(root: Path, camera: str, path: Path) -> ChunkLocation:
    """The location of one of the camera's chunk files, read from its path (the file may sit behind a
    symlinked folder); FileNotFoundError if ``path`` is not named as one."""
    chunk_match, file_match = CHUNK_DIR_RE.fullmatch(path.parent.name), FILE_RE.fullmatch(path.name)
    if chunk_match is None or file_match is None or path.parent.parent != videos_dir(root) / camera:
        raise FileNotFoundError(f"{path} is not a chunk file of camera {camera!r}.")
    return ChunkLocation(int(chunk_match.group(1)), int(file_match.group(1)))


def log_chunk_skipped(path: Path, error: Exception) -> None:
    """A chunk file that cannot be read or appended to is left as it is; the episode goes to a new file."""
    log.error(
        "chunk_skipped",
        chunk=str(path),
        detail=str(error),
        action="starting a new chunk file; the skipped file is left untouched for inspection",
    )


def skip_chunk(root: Path, camera: str, location: ChunkLocation, error: Exception) -> None:
    """A file this episode cannot be appended to: left as it is, sealed (never tried again), and logged."""
    path = location.path(root, camera)
    log_chunk_skipped(path, error)
    if path.exists():
        seal_file(root, camera, location, "skipped")


def finish_file(root: Path, camera: str, location: ChunkLocation, reason: str) -> None:
    """The service is done with this file: give back its dead space if it is worth it, then seal it.

    The caller holds the camera's lock, with no append pending on the file. After the seal the
    service never writes the file again, and robovid-ship may ship and delete it.
    """
    compact_finished(location.path(root, camera))
    seal_file(root, camera, location, reason)


def seal_file(root: Path, camera: str, location: ChunkLocation, reason: str) -> None:
    """Seal one file (:func:`robovid_watch.finished.seal`); the caller holds the camera's lock."""
    fault_point("seal:before-record")
    sealed = seal(root, camera, location, reason)
    log.info("chunk_sealed", chunk=str(location.path(root, camera)), size_bytes=sealed.size_bytes, reason=reason)


def seal_at_start(root: Path) -> None:
    """Seal every file that is not its camera's last (roots from before sealing, a crash mid-rollover).

    Called after recovery, before any worker starts. A file that cannot be sealed is only not
    shipped yet: it is logged, and tried again at the next start.
    """
    for camera, location in unsealed_before_last(root):
        try:
            seal_file(root, camera, location, "start")
        except OSError as error:
            log.error(
                "seal_failed",
                chunk=str(location.path(root, camera)),
                detail=str(error),
                action="robovid-ship will not ship this file until it is sealed; check its permissions",
            )


def seal_idle(ctx: Context, busy_cameras: set[str], idle_s: float) -> None:
    """Finish each camera's last file once it has not grown for ``idle_s`` (0: never), so it ships.

    Skips a camera with an episode in flight, a held lock or a journaled append not committed yet.
    """
    if not idle_s:
        return
    for camera, location in idle_last_files(ctx.root, idle_s, time.time()):
        lock = ctx.camera_lock(camera)
        if camera in busy_cameras or not lock.acquire(blocking=False):
            continue
        try:
            if not any(
                isinstance(i, DamagedIntent) or (i.camera == camera and (i.camera, i.episode) not in ctx.done)
                for i in ctx.state.intents()
            ):
                finish_file(ctx.root, camera, location, "idle")
        finally:
            lock.release()


def compact_finished(path: Path) -> None:
    """Give back the dead space appends left in a file the service is finished with.

    Only past COMPACT_ABOVE dead space (old movie boxes), and only with room for a full copy
    beside it. A failure costs nothing but the space: the file stays as it was, and is logged.
    """
    try:
        space = chunk_space(path)
        if space.dead_share <= COMPACT_ABOVE:
            return
        if shutil.disk_usage(path.parent).free < 2 * space.file_bytes:
            log.info("chunk_not_compacted", chunk=str(path), reason="not enough free space for a copy")
            return
        started = time.monotonic()
        compact_chunk(path)
    except (RobovidError, OSError) as error:  # TruncatedVideoError: a sample run past the end of the file
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
