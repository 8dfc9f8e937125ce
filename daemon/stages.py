"""Stages 3-7 for one episode: encode -> verify -> append -> commit -> clean, one function each.

Read :func:`process_episode` top to bottom. The order is the safety argument:

1. :func:`encode` into a spooled temp file (memory, or the state folder's ``tmp/`` past 64 MiB);
2. :func:`verify` the temp video against the PNGs (frame count, every frame decodes and shows its
   own source frame tile by tile, PSNR);
3. :func:`append`: write the journal intent (durable), then append to the chunk (crash-safe on
   its own; which file, and finishing (compacting, sealing) the one before it, is :mod:`robovid_watch.chunks`);
4. :func:`~robovid_watch.rows.commit` the metadata row (durable);
5. only then :func:`~robovid_watch.cleaning.clean`: delete the encoded PNGs, and last the intent.

A crash between any two steps is resolved at restart by :func:`robovid_watch.recovery.recover_intents`:
no row and the chunk unchanged -> the episode is redone from its PNGs; no row but the chunk holds
the append -> the row is committed from the chunk's own timestamps; row present -> cleaning is
finished. No step deletes a PNG that is not in a committed row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import structlog

from robovid._faults import fault_point
from robovid._stop import StopFlag
from robovid.append import VideoSegment, append_video, count_frames, recover_chunk, undo_append
from robovid.depth import depth_frame_kind
from robovid.depth_config import DepthEncoderConfig
from robovid.depth_encode import DepthEncodeResult, encode_depth_frames_into, verify_depth_video
from robovid.encode import EncodeResult, encode_frames_into
from robovid.errors import (
    FrameSequenceError,
    FrameSizeError,
    MismatchedVideosError,
    TruncatedVideoError,
    VerificationError,
    VideoFormatError,
)
from robovid.frames import frame_size, list_episode_frames
from robovid.layout import ChunkLocation
from robovid.lerobot_stats import FrameStatsAccumulator, feature_stats_to_json
from robovid.metadata import SegmentRow, SegmentStore
from robovid.probe import get_video_info
from robovid.settings import EncoderSettings
from robovid.verify import VerifyReport, check_segment_decodes, verify_video

from . import retakes
from .chunks import current_chunk, finish_file, skip_chunk
from .cleaning import clean, frame_identities
from .discover import EpisodeRef, folder_signature
from .errors import EpisodeChangedError
from .recovery import recover_intents
from .rows import check_storable, commit_or_undo
from .state import Intent, RetakeRequest, RootState

log = structlog.get_logger("robovid_watch")

SPOOL_MAX_BYTES = 64 * 1024 * 1024
"""An encoded episode stays in memory up to this size (written to disk once, into the chunk)."""
VERIFY_KEEP_BYTES = 48 * 1024 * 1024
"""Memory for source frames kept for the PSNR check (an 8K frame is 100 MB: then first and last only)."""
VERIFY_SAMPLES = 8
"""Frames compared to their PNG by PSNR, besides the first and the last."""
DEPTH_ENCODER = DepthEncoderConfig.exact().to_settings()
"""How depth cameras (16-bit greyscale PNGs) are encoded, whatever ``ROBOVID_VCODEC`` says: exactly (FFV1 of the
millimetres), here and on a Ray worker alike."""


class Offload(Protocol):
    """Runs stages 3-4 elsewhere (a Ray cluster: :mod:`robovid_watch.ray_offload`) and leaves the verified
    episode in ``temp``, with what :func:`encode_and_verify` returns."""

    def encode_and_verify(
        self, ctx: EncodeSettings, frames: list[Path], temp: BinaryIO, fps: int, timings: dict[str, float]
    ) -> tuple[EncodeResult, VerifyReport, str | None]: ...


class EncodeSettings(Protocol):
    """What stages 3-4 read of the context: all a worker elsewhere needs (:class:`Context` is one)."""

    encoder: EncoderSettings
    min_psnr_db: float
    stop: StopFlag
    offload: Offload | None


@dataclass
class Context:
    """Everything the stages share."""

    root: Path
    state: RootState
    store: SegmentStore
    encoder: EncoderSettings
    max_frame_pixels: int
    file_size_limit_bytes: int
    files_per_chunk: int
    min_psnr_db: float
    marker: str
    stop: StopFlag
    settle_s: float = 0.0
    """ROBOVID_SETTLE_S (0: episodes complete by their marker only); kept frames are reported with it."""
    done: set[tuple[str, int]] = field(default_factory=set)
    takes: dict[tuple[str, int], int] = field(default_factory=dict)
    """The take of each committed episode's current row (0 unless re-taken)."""
    offload: Offload | None = None
    """Where stages 3-4 run when not in this process (``robovid process --ray``); appends and commits stay here."""
    last_in_rows: dict[str, ChunkLocation] = field(default_factory=dict)  # each camera's, for current_chunk
    _camera_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def camera_lock(self, camera: str) -> threading.Lock:
        with self._locks_guard:
            return self._camera_locks.setdefault(camera, threading.Lock())


@dataclass
class Outcome:
    """What processing one episode did, for the service's log event and counters."""

    status: str
    """"done", "cleaned" (finished an earlier commit) or "abandoned" (stop requested)."""
    frames: int = 0
    video_bytes: int = 0
    source_bytes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    fps: int = 0


@contextlib.contextmanager
def stage_timer(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall seconds of the block as ``timings[name]`` (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - started


def process_episode(ctx: Context, ref: EpisodeRef, fps: int, retake: RetakeRequest | None = None) -> Outcome:
    """Turn one complete episode folder into a committed segment, then free its PNGs.

    With ``retake`` (``robovid retake``), the folder holds a new take of a committed episode: it
    is appended as a new segment and committed as the episode's next take; the earlier take's
    row and frames stay where they are.
    """
    key = (ref.camera, ref.episode)
    with ctx.camera_lock(ref.camera):
        recover_intents(ctx, camera=ref.camera)  # an earlier attempt may have appended this very episode
    if key in ctx.done and not retakes.is_due(ctx.takes, key, retake):
        clean(ctx, ref, ctx.state.intent(*key))
        retakes.answer(ctx.state, ctx.takes, key, retake)
        return Outcome("cleaned")
    fault_point("stage:before-encode", ctx.stop)
    signature = folder_signature(ref.path)
    frames = list_episode_frames(ref.path, ctx.root, marker=ctx.marker)
    encoded_ids = frame_identities(frames)  # before the frames are read: what cleaning may delete
    source_mtime_ns, source_bytes = _source_stamp(frames)
    _check_frame_pixels(ctx, frames[0])
    timings: dict[str, float] = {}
    with tempfile.SpooledTemporaryFile(SPOOL_MAX_BYTES, mode="w+b", dir=str(ctx.state.tmp_dir)) as spooled:
        temp = cast(BinaryIO, spooled)
        encoded, report, stats_json = encode_and_verify(ctx, frames, temp, fps, timings)
        take = 0 if retake is None else retake.replaces_take + 1
        row = _row(ref, fps, temp, encoded, report, source_bytes, timings, stats_json, take)
        check_storable(row)
        with ctx.camera_lock(ref.camera):
            recover_intents(ctx, camera=ref.camera)
            _check_unchanged(ctx, ref, signature, retake)
            with stage_timer(timings, "append_s"):
                segment = append(ctx, ref, temp, len(frames), row, source_mtime_ns, encoded_ids)
            fault_point("stage:after-append")
            commit_or_undo(ctx, ref, segment, dataclasses.replace(row, append_s=timings["append_s"]))
            fault_point("stage:after-commit")
    clean(ctx, ref, ctx.state.intent(*key))
    retakes.answer(ctx.state, ctx.takes, key, retake)
    return Outcome("done", len(frames), encoded.size_bytes, source_bytes, timings, fps)


def _row(
    ref: EpisodeRef,
    fps: int,
    temp: BinaryIO,
    encoded: EncodeResult,
    report: VerifyReport,
    source_bytes: int,
    timings: dict[str, float],
    stats_json: str | None,
    take: int,
) -> SegmentRow:
    """The episode's metadata row before it has a place in a chunk file."""
    return SegmentRow.from_video_info(
        get_video_info(temp),
        episode_index=ref.episode,
        video_key=ref.camera,
        num_frames=encoded.num_frames,
        fps=fps,
        video_bytes=encoded.size_bytes,
        source_bytes=source_bytes,
        encode_s=timings["encode_s"],
        verify_s=timings["verify_s"],
        min_psnr_db=report.min_psnr_db,
        lerobot_stats=stats_json,
        take=take,
    )


def _check_unchanged(ctx: Context, ref: EpisodeRef, signature: str, retake: RetakeRequest | None) -> None:
    """EpisodeChangedError if recovery committed the episode meanwhile, or its folder changed since it was read."""
    key = (ref.camera, ref.episode)
    if key in ctx.done and not retakes.is_due(ctx.takes, key, retake):
        raise EpisodeChangedError(f"{ref.path} was committed by recovery meanwhile; it will be cleaned.")
    if folder_signature(ref.path) != signature:
        raise EpisodeChangedError(f"{ref.path} changed while it was encoded; it will be encoded again.")


def _source_stamp(frames: list[Path]) -> tuple[int, int]:
    """Newest mtime and total size of the frames, from one stat each."""
    try:
        stats = [p.stat() for p in frames]
    except FileNotFoundError as error:
        raise FrameSequenceError(f"{error.filename}: disappeared while the episode was being read.") from error
    return max(st.st_mtime_ns for st in stats), sum(st.st_size for st in stats)


def _check_frame_pixels(ctx: Context, first_frame: Path) -> None:
    width, height = frame_size(first_frame)
    if width * height > ctx.max_frame_pixels:
        raise FrameSizeError(
            f"{first_frame}: {width}x{height} frames are larger than ROBOVID_MAX_FRAME_PIXELS "
            f"({ctx.max_frame_pixels}); their encoder would need more memory than the service is given. Raise "
            "ROBOVID_MAX_FRAME_PIXELS together with MemoryMax= in the unit (about 2 GB per 8K encode), or scale "
            "the frames down in the recorder."
        )


def encode_and_verify(
    ctx: EncodeSettings, frames: list[Path], temp: BinaryIO, fps: int, timings: dict[str, float]
) -> tuple[EncodeResult, VerifyReport, str | None]:
    """Stages 3-4: the verified episode in ``temp``, its encode and verify reports, its LeRobot statistics (JSON).

    Here, or on ``ctx.offload`` (a Ray worker runs this same function with its own settings).
    """
    if ctx.offload is not None:
        done = ctx.offload.encode_and_verify(ctx, frames, temp, fps, timings)
        fault_point("stage:after-encode")
        return done
    stats = FrameStatsAccumulator(len(frames), depth=depth_frame_kind(frames[0]) == "depth")
    with stage_timer(timings, "encode_s"):
        encoded = encode(ctx, frames, temp, fps, stats)
    fault_point("stage:after-encode")
    with stage_timer(timings, "verify_s"):
        report = verify(ctx, temp, len(frames), encoded)
    return encoded, report, feature_stats_to_json(stats.stats())


def encode(
    ctx: EncodeSettings, frames: list[Path], temp: BinaryIO, fps: int, stats: FrameStatsAccumulator | None = None
) -> EncodeResult:
    """Stage 3: encode the PNGs into a spooled temp file (memory; the state folder's tmp/ past SPOOL_MAX_BYTES).

    Keeps the decoded source of the frames :func:`verify` compares, so no PNG is read twice, and
    counts LeRobot's statistics of the episode into ``stats`` from the frames it decodes anyway.
    A depth camera's episode (16-bit greyscale PNGs) is encoded exactly instead (:data:`DEPTH_ENCODER`),
    keeping every frame's depth fingerprint for :func:`verify`; ``stats`` is then a depth accumulator.
    """
    if depth_frame_kind(frames[0]) == "depth":
        return encode_depth_frames_into(temp, frames, fps, DEPTH_ENCODER, stop=ctx.stop, fingerprints=True, stats=stats)
    width, height = frame_size(frames[0])
    keep = _sample_indices(len(frames), samples=VERIFY_KEEP_BYTES // max(1, width * height * 3) - 2)
    return encode_frames_into(temp, frames, fps, ctx.encoder, keep=keep, stop=ctx.stop, fingerprints=True, stats=stats)


def verify(ctx: EncodeSettings, temp: BinaryIO, num_pngs: int, encoded: EncodeResult) -> VerifyReport:
    """Stage 4: every frame of the encode decodes, there are ``num_pngs`` of them, each shows its own source frame.

    Tile by tile against the source fingerprints the encode kept (FrameMismatchError names the
    frame and tile), and the kept frames match their PNG above the PSNR floor. VerificationError
    otherwise (the PNGs are kept). The appended copy is checked again after
    the append (:func:`append`). A depth episode must decode to its source samples exactly, frame by frame.
    """
    if isinstance(encoded, DepthEncodeResult):
        return verify_depth_video(temp, num_pngs, encoded.depth_fingerprints)
    return verify_video(temp, num_pngs, encoded.kept_frames, ctx.min_psnr_db, encoded.fingerprints)


def _sample_indices(num_frames: int, samples: int) -> set[int]:
    """First, last and up to ``samples`` evenly spaced frames between them."""
    samples = max(0, min(VERIFY_SAMPLES, samples))
    if samples == 0:
        return {0, num_frames - 1}
    step = max(1, num_frames // (samples + 1))
    return {0, num_frames - 1, *range(step, num_frames - 1, step)}


def append(
    ctx: Context,
    ref: EpisodeRef,
    temp: BinaryIO,
    num_frames: int,
    row: SegmentRow,
    source_mtime_ns: int,
    encoded: dict[str, str] | None = None,
) -> VideoSegment:
    """Stage 5: journal the intent, append to the camera's current chunk file, check it reads back.

    The caller holds the camera's lock and has resolved the camera's journal. ``encoded``: each
    encoded frame's identity, for cleaning (none for a source robovid never deletes: robovid convert).
    """
    size = temp.seek(0, os.SEEK_END)
    limit, per_chunk, floor = ctx.file_size_limit_bytes, ctx.files_per_chunk, ctx.last_in_rows.get(ref.camera)
    location = current_chunk(ctx.root, ref.camera, size, limit, per_chunk, floor)
    for _attempt in range(3):
        path = location.path(ctx.root, ref.camera)
        try:
            before = count_frames(path) if path.exists() else 0
        except VideoFormatError as error:
            skip_chunk(ctx.root, ref.camera, location, error)
            location = location.next(ctx.files_per_chunk)
            continue
        intent = Intent(
            ref.camera,
            ref.episode,
            location.chunk_index,
            location.file_index,
            before,
            num_frames,
            row,
            source_mtime_ns,
            encoded or {},
        )
        ctx.state.write_intent(intent)
        fault_point("stage:after-intent", ctx.stop)
        try:
            segment = append_video(path, temp, identity=row.identity(datetime.now(UTC)))
        except TruncatedVideoError:  # the episode's temp file, not the chunk: the episode fails alone
            _undo_partial_append(ctx, ref, path)
            raise
        except MismatchedVideosError as error:
            ctx.state.clear_intent(ref.camera, ref.episode)
            log.info(
                "chunk_file_finished",
                chunk=str(path),
                reason="the episode's codec setup, frame size or rate differs from this file's (settings changed)",
                detail=str(error),
                action="a new chunk file takes this episode and the ones after it; the finished file is sealed",
            )
            finish_file(ctx.root, ref.camera, location, "settings changed")
            location = location.next(ctx.files_per_chunk)
            continue
        except VideoFormatError as error:
            ctx.state.clear_intent(ref.camera, ref.episode)
            skip_chunk(ctx.root, ref.camera, location, error)
            location = location.next(ctx.files_per_chunk)
            continue
        except BaseException:
            _undo_partial_append(ctx, ref, path)
            raise
        if segment.first_frame == before:
            break
        _take_back_misplaced(ctx, ref, segment, before)  # the file was moved or replaced since it was counted
        location = location.next(ctx.files_per_chunk)
    else:
        raise VideoFormatError(f"{ref.path}: no chunk file of camera {ref.camera!r} could take this episode.")
    try:
        check_segment_decodes(segment)
    except VerificationError:
        undo_append(segment)  # never let recovery commit a segment that did not read back
        ctx.state.clear_intent(ref.camera, ref.episode)
        raise
    return segment


def _take_back_misplaced(ctx: Context, ref: EpisodeRef, segment: VideoSegment, before: int) -> None:
    """The chunk file changed between its count and the append (moved away, so the append created a new
    file under a name rows use; or replaced): take the append back, so the name is never reused."""
    undo_append(segment)
    ctx.state.clear_intent(ref.camera, ref.episode)
    log.warning(
        "chunk_missing",
        camera=ref.camera,
        chunk=str(segment.path),
        detail=f"the file held {before} frames when it was chosen and {segment.first_frame} at the append "
        "(moved away or replaced meanwhile); the append was taken back",
        action="put the file back where it was if it was moved; this episode and the next go to the next file",
    )


def _undo_partial_append(ctx: Context, ref: EpisodeRef, path: Path) -> None:
    """After a failed append (disk full, I/O error): drop its uncommitted tail, forget the intent."""
    intent = ctx.state.intent(ref.camera, ref.episode)
    with contextlib.suppress(OSError):
        if path.exists():
            recover_chunk(path)
        if intent is not None and (count_frames(path) if path.exists() else 0) == intent.frames_before:
            ctx.state.clear_intent(ref.camera, ref.episode)
