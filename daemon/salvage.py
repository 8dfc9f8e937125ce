"""What recovery does with a journal intent it could not read: roll the camera back to what its rows claim.

An intent is written before its chunk is touched and is the only record of an append in flight.
When it is damaged (truncated, emptied, written by another version; quarantined by
:class:`robovid_watch.state.RootState`), its file name still names the camera (by
:func:`~robovid_watch.state.camera_id`) and the episode. A camera has at most one append in
flight, always at the end of its last chunk file, so whatever that file holds past the frames its
committed rows claim is that append: it is taken back, and the episode, whose PNGs are all still
there (nothing is deleted before its row is committed), is encoded again. Nothing is committed
from a record robovid cannot read.

The tail is taken back only when it has exactly as many frames as the episode's folder holds
PNGs: then it is that episode's append and its frames are still on disk. Anything else (the
segment table lost rows, so committed frames look unclaimed; the episode's folder gone) is left
in the chunk file and reported: taking it back could delete the only copy of committed frames.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from robovid.append import count_frames, read_segment, recover_chunk, undo_append
from robovid.errors import RobovidError
from robovid.frames import list_episode_frames
from robovid.layout import episode_dir, images_dir, list_cameras, list_chunks
from robovid.metadata import read_segments

from .state import DamagedIntent, camera_id

log = structlog.get_logger("robovid_watch")


def camera_named(root: Path, damaged: DamagedIntent) -> str | None:
    """The camera whose :func:`camera_id` the damaged intent's name holds (among its video and image folders)."""
    names = set(list_cameras(root))
    base = images_dir(root)
    if base.is_dir():
        names |= {path.name for path in base.iterdir() if path.is_dir()}
    matches = [name for name in names if camera_id(name) == damaged.camera_id]
    return matches[0] if matches else None


def roll_back_unclaimed_tail(root: Path, camera: str, episode: int | None) -> None:
    """Take back the frames the camera's last chunk file holds past what its committed rows claim."""
    chunks = list_chunks(root, camera)
    if not chunks:
        return
    last = chunks[-1]
    path = last.path(root, camera)
    rows = [
        r
        for r in read_segments(root, all_takes=True).to_pylist()
        if r["video_key"] == camera and (r["chunk_index"], r["file_index"]) == (last.chunk_index, last.file_index)
    ]
    claimed = max((r["first_frame"] + r["num_frames"] for r in rows), default=0)
    try:
        recover_chunk(path)  # an append that never reached its commit flip is dropped first
        frames = count_frames(path)
        on_disk = _png_count(root, camera, episode)
        if frames > claimed and on_disk != frames - claimed:
            log.error(
                "append_not_undone",
                camera=camera,
                episode=episode,
                chunk=str(path),
                detail=f"its journal intent was damaged; frames {claimed}..{frames - 1} of the chunk file belong to "
                f"no row, but the episode's folder holds {on_disk} frame PNGs, so they are not just its append",
                action="they were left in the chunk file (they may be the only copy of committed frames whose row "
                "was lost); `robovid verify` reports them, and `robovid verify --repair` rebuilds their row from the "
                "chunk file's record with the service stopped",
            )
            return
        if frames > claimed:
            undo_append(read_segment(path, claimed, frames - claimed))
    except (OSError, RobovidError, EOFError) as error:
        log.error(
            "append_not_undone",
            camera=camera,
            episode=episode,
            chunk=str(path),
            detail=f"its journal intent was damaged and the chunk's tail could not be taken back: {error}",
            action="the PNGs were kept; `robovid verify` reports chunk frames no row claims",
        )
        return
    if frames > claimed:
        log.warning(
            "append_undone",
            camera=camera,
            episode=episode,
            chunk=str(path),
            detail=f"its journal intent was damaged; frames {claimed}..{frames - 1} no row claims were taken back",
            action="nothing to do: the episode is encoded again from its PNGs",
        )


def _png_count(root: Path, camera: str, episode: int | None) -> int | None:
    """How many frame PNGs the episode's folder holds (None: no episode named, or no readable folder)."""
    if episode is None:
        return None
    try:
        return len(list_episode_frames(episode_dir(root, camera, episode)))
    except (OSError, RobovidError):
        return None
