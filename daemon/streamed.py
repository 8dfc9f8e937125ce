"""Streamed episodes: what ``robovid.StreamingVideoEncoder(handoff=True)`` leaves, through the same stages.

A recorder that streams an episode leaves, under ``layout.stream_dir(root, camera, episode)``,
closed MP4 segments of its first frames with the fingerprints of the arrays it was fed, and (when
its encoder fell behind) the rest of the episode as PNGs in the episode's normal folder
(:mod:`robovid.stream_files`). When it finishes, it writes ``finished.json`` and the folder's
completion marker, so discovery finds the episode as it finds a PNG episode. Then
:func:`process_streamed` runs the PNG path's stages on it:

1. assemble: the segments joined by stream copy, plus the PNG tail encoded with the stream's own
   settings, into one spooled temp video;
2. verify: every frame decodes, the count is right, and every frame shows its own source frame,
   tile by tile, against the fingerprints of the fed arrays (segments) or of the PNGs (tail);
3. append with its journal intent, exactly as a PNG episode (a row that cannot be stored fails
   the episode before; a commit that fails takes the append back, as for a PNG episode);
4. commit;
5. the handoff folder is deleted only once the episode is committed (until then it is the only
   copy of the streamed frames besides an append that recovery may take back), then the PNG tail,
   the marker and the folder are cleaned.

A recording process that died leaves a handoff without ``finished.json`` whose ``writer.lock`` no
one holds: :func:`prepare` (each rescan) salvages it, turning the frames of its crash log that
are in no segment into PNGs (:func:`robovid.stream_log.salvage`), then marks it finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt
import structlog

from robovid._faults import fault_point
from robovid._movie import check_compatible, read_movie, write_movie
from robovid.durable import fsync_dir, is_temp_path, make_dirs_durably, write_bytes_durably
from robovid.encode import encode_frames_into
from robovid.errors import FrameSequenceError, RobovidError, StreamingError, VerificationError
from robovid.fingerprint import Fingerprint
from robovid.layout import episode_dir, frame_path, parse_episode_dir, stream_dir, streams_dir
from robovid.lerobot_stats import FrameStatsAccumulator, feature_stats_to_json, image_stats_from_counts
from robovid.metadata import SegmentRow
from robovid.probe import get_video_info
from robovid.stream_files import (
    COMPLETE_MARKER,
    WRITER_LOCK,
    Finished,
    StreamInfo,
    channel_counts,
    lock_writer,
    published_segments,
    read_segment_data,
    segment_path,
)
from robovid.stream_log import salvage
from robovid.verify import verify_video

from .discover import EpisodeRef, folder_signature
from .errors import DuplicateEpisodeError, EpisodeChangedError
from .rows import check_storable, commit_or_undo
from .stages import (
    SPOOL_MAX_BYTES,
    VERIFY_KEEP_BYTES,
    Context,
    Outcome,
    _sample_indices,
    _source_stamp,
    append,
    clean,
    recover_intents,
    stage_timer,
)

log = structlog.get_logger("robovid_watch")


def has_handoff(root: Path, ref: EpisodeRef) -> bool:
    """True when the episode was streamed (its handoff folder exists)."""
    return stream_dir(root, ref.camera, ref.episode).is_dir()


APPENDING = "appending"
"""Written into a handoff folder just before its episode's journal intent: a handoff that has it
while its episode is committed was appended (and committed by recovery), so it is removed."""


def prepare(root: Path, marker: str, done: Collection[tuple[str, int]]) -> None:
    """Salvage the handoffs of recorders that died; make sure every finished one's folder holds ``marker``.

    A handoff whose episode was appended and then committed by recovery after a crash is removed.
    """
    for camera_dir in _entries(streams_dir(root)):
        for folder in _entries(camera_dir):
            episode = parse_episode_dir(folder.name)
            if episode is None:
                _remove_stale_staging(folder)
                continue
            png_dir = episode_dir(root, camera_dir.name, episode)
            try:
                if (camera_dir.name, episode) in done and (folder / APPENDING).exists():
                    _remove_handoff(folder)
                    log.info("stream_handoff_removed", path=str(folder), reason="its episode was committed by recovery")
                    continue
                finished = Finished.read(folder) or _salvage_if_dead(folder, png_dir)
                if finished is not None and not (png_dir / marker).exists():
                    make_dirs_durably(png_dir)
                    (png_dir / marker).touch()
            except (RobovidError, OSError, ValueError) as error:
                log.error(
                    "stream_salvage_failed",
                    camera=camera_dir.name,
                    episode=episode,
                    path=str(folder),
                    detail=str(error),
                    action="the segments, crash log and PNGs were kept; check them, then restart robovid-watch",
                )


STAGING_STALE_S = 60.0
"""A recorder's staging folder (``.episode-N.*``, renamed into place once locked) this old and unlocked was
left by a recorder that died while starting the episode: it holds nothing but its lock file."""


def _remove_stale_staging(folder: Path) -> None:
    if not folder.name.startswith(".episode-"):
        return
    with contextlib.suppress(OSError):
        if time.time() - folder.stat().st_mtime < STAGING_STALE_S:
            return
        fd = lock_writer(folder)
        if fd is None:
            return
        try:
            if all(p.name == WRITER_LOCK for p in folder.iterdir()):
                shutil.rmtree(folder)
        finally:
            os.close(fd)


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(directory) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def _salvage_if_dead(folder: Path, png_dir: Path) -> Finished | None:
    fd = lock_writer(folder)
    if fd is None:
        return None  # its recorder is still streaming it
    try:
        if Finished.read(folder) is not None:  # finished between the read and the lock
            return Finished.read(folder)
        finished = salvage(folder, png_dir)
        if finished is None:  # no stream.json: no frame was ever fed, unless its write failed
            _check_holds_no_frame(folder)
            shutil.rmtree(folder)
            fsync_dir(folder.parent)
            return None
        log.warning(
            "stream_salvaged",
            path=str(folder),
            frames=finished.num_frames,
            in_segments=finished.prefix_frames,
            torn_frames=finished.torn_frames,
            detail="the recording process died mid-episode; every frame it was fed is in a segment or a PNG"
            if not finished.torn_frames
            else "the recording process died mid-episode and its crash log was torn (a power cut?): the episode "
            "ends at the first frame lost; the frames after it were never counted durable and are left out",
        )
        return finished
    finally:
        os.close(fd)


def _check_holds_no_frame(folder: Path) -> None:
    """StreamingError when a handoff without ``stream.json`` holds more than its lock: frames it cannot read."""
    kept = sorted(p.name for p in folder.iterdir() if p.name != WRITER_LOCK and not is_temp_path(p))
    if kept:
        raise StreamingError(
            f"{folder} holds {', '.join(kept[:5])} but no stream.json (an older robovid could lose it to a full disk), "
            "so its frames cannot be read and it was kept: write its stream.json (robovid.stream_files."
            "StreamInfo: camera, episode, fps, width, height, segment_frames, settings) or move the folder away."
        )


class _CountAll(FrameStatsAccumulator):
    """Counts every frame (a streamed episode's statistics cover all its frames, as the stream's do)."""

    def __init__(self) -> None:
        super().__init__(0)
        self.counts: npt.NDArray[np.int64] = np.zeros((3, 256), np.int64)

    def add(self, index: int, frame: npt.NDArray[Any]) -> None:
        self.counts += channel_counts(frame)  # a stream is colour: uint8 H x W x 3


def process_streamed(ctx: Context, ref: EpisodeRef) -> Outcome:
    """The stages for one finished streamed episode (module docstring)."""
    folder = stream_dir(ctx.root, ref.camera, ref.episode)
    key = (ref.camera, ref.episode)
    finished, info = Finished.read(folder), StreamInfo.read(folder)
    if finished is None or (info is None and finished.num_frames > 0):  # stream.json comes with the first frame
        raise EpisodeChangedError(f"{folder}: the episode is still being streamed; it is taken once finished.")
    with ctx.camera_lock(ref.camera):
        recover_intents(ctx, camera=ref.camera)
    if key in ctx.done and (folder / APPENDING).exists():  # appended, then committed by recovery after a crash
        _remove_handoff(folder)
        clean(ctx, ref, ctx.state.intent(*key))
        return Outcome("cleaned")
    if key in ctx.done:
        raise DuplicateEpisodeError(
            f"{folder}: episode {ref.episode} of camera {ref.camera!r} is committed already, and was streamed again "
            "with the same index. Both were kept: move the handoff folder and the episode folder away, or re-record "
            "under a new index."
        )
    if finished.num_frames == 0 or info is None:  # started, never fed (so no stream.json)
        _remove_handoff(folder)
        (ref.path / ctx.marker).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            ref.path.rmdir()
        return Outcome("cleaned")
    if ctx.marker != COMPLETE_MARKER and (ref.path / ctx.marker).exists():  # prepare() put the service's marker
        (ref.path / COMPLETE_MARKER).unlink(missing_ok=True)  # the stream's own would stop the folder's removal
    fault_point("streamed:before-assemble", ctx.stop)
    tail = [frame_path(ref.path, i) for i in range(finished.prefix_frames, finished.num_frames)]
    source_mtime_ns, source_bytes = _source_stamp(tail) if tail else (0, 0)
    signature = folder_signature(ref.path)
    timings: dict[str, float] = {}
    with tempfile.SpooledTemporaryFile(SPOOL_MAX_BYTES, mode="w+b", dir=str(ctx.state.tmp_dir)) as spooled:
        temp = cast(BinaryIO, spooled)
        with stage_timer(timings, "encode_s"):
            fingerprints, kept, counts = _assemble(ctx, folder, info, finished, tail, temp)
        with stage_timer(timings, "verify_s"):
            report = verify_video(temp, finished.num_frames, kept, ctx.min_psnr_db, fingerprints)
        size = temp.seek(0, os.SEEK_END)
        row = SegmentRow.from_video_info(
            get_video_info(temp),
            episode_index=ref.episode,
            video_key=ref.camera,
            num_frames=finished.num_frames,
            fps=int(info.fps),
            video_bytes=size,
            source_bytes=source_bytes,
            encode_s=timings["encode_s"],
            verify_s=timings["verify_s"],
            min_psnr_db=report.min_psnr_db,
            lerobot_stats=feature_stats_to_json(image_stats_from_counts(counts, finished.num_frames)),
        )
        check_storable(row)
        with ctx.camera_lock(ref.camera):
            recover_intents(ctx, camera=ref.camera)
            if key in ctx.done or folder_signature(ref.path) != signature:
                raise EpisodeChangedError(f"{ref.path} changed or was committed while it was assembled; retried.")
            write_bytes_durably(folder / APPENDING, b"")
            with stage_timer(timings, "append_s"):
                segment = append(ctx, ref, temp, finished.num_frames, row, source_mtime_ns)
            fault_point("streamed:after-append")
            commit_or_undo(ctx, ref, segment, dataclasses.replace(row, append_s=timings["append_s"]))  # handoff kept
            fault_point("streamed:after-commit")
            _remove_handoff(folder)  # committed: a kill before this leaves APPENDING, and prepare() removes it
            fault_point("streamed:after-handoff-removed")
    clean(ctx, ref, ctx.state.intent(*key), tail)
    return Outcome("done", finished.num_frames, size, source_bytes, timings, int(info.fps))


def _assemble(
    ctx: Context, folder: Path, info: StreamInfo, finished: Finished, tail: list[Path], out: BinaryIO
) -> tuple[list[Fingerprint], dict[int, np.ndarray], npt.NDArray[np.int64]]:
    """Segments plus the encoded PNG tail into ``out``: every frame's fingerprint, kept tail frames, byte counts."""
    fingerprints: list[Fingerprint] = []
    counts = np.zeros((3, 256), np.int64)
    numbers = published_segments(folder)
    for number in numbers:
        segment_fingerprints, segment_counts = read_segment_data(folder, number)
        fingerprints += segment_fingerprints
        counts += segment_counts
    if len(fingerprints) != finished.prefix_frames:
        raise VerificationError(
            f"{folder}: its segments hold {len(fingerprints)} frames, but the stream put {finished.prefix_frames} "
            "in segments. The segments and PNGs were kept."
        )
    paths = [segment_path(folder, n) for n in numbers]
    kept: dict[int, np.ndarray] = {}
    with contextlib.ExitStack() as stack:
        if tail:
            missing = [p.name for p in tail if not p.exists()]
            if missing:
                raise FrameSequenceError(f"{tail[0].parent}: the streamed episode's PNGs {missing[:5]} are missing.")
            tail_file = stack.enter_context(tempfile.NamedTemporaryFile(dir=ctx.state.tmp_dir, suffix=".mp4"))
            samples = VERIFY_KEEP_BYTES // max(1, info.frame_bytes) - 2
            stats = _CountAll()
            encoded = encode_frames_into(
                cast(BinaryIO, tail_file),
                tail,
                info.fps,
                info.encoder_settings(),
                keep=_sample_indices(len(tail), samples),
                stop=ctx.stop,
                fingerprints=True,
                stats=stats,
            )
            fingerprints += encoded.fingerprints
            kept = {finished.prefix_frames + i: frame for i, frame in encoded.kept_frames.items()}
            counts += stats.counts
            paths.append(Path(tail_file.name))
        movies = [read_movie(p) for p in paths]
        for movie in movies[1:]:
            check_compatible(movies[0], movie)
        write_movie(out, movies)
    out.flush()
    return fingerprints, kept, counts


def _remove_handoff(folder: Path) -> None:
    shutil.rmtree(folder)
    fsync_dir(folder.parent)
