"""Check video against its source: an encode before its PNGs are deleted, a segment after its append, a whole root.

- :func:`verify_video`: every frame of an encoded episode decodes, the count is right, and
  sampled frames match their source PNGs above a PSNR floor (the service's verify stage).
- :func:`check_segment_decodes`: an appended segment's first and last frames decode at their
  timestamps from the chunk file itself.
- :func:`verify_root`: every metadata row of a recording root against its chunk file
  (``robovid verify``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import av
import numpy as np

from robovid._movie import Movie, VideoSegment, read_movie
from robovid._records import read_records, sizes_digest
from robovid.errors import FrameMismatchError, RobovidError, VerificationError
from robovid.fingerprint import Fingerprint, compare, fingerprint
from robovid.layout import list_cameras, list_chunks
from robovid.metadata import read_segments
from robovid.remote import chunk_location, exists, is_url, open_video_file, store_errors

DECODER_THREADS = 1
"""Decoder threads for verification: the service runs one verify per worker and its workers already keep
the cores busy, where one dav1d thread decodes an episode for 0.65x the CPU of FFmpeg's automatic
threading (benchmarks/bench_levers.py)."""
DEFAULT_MIN_PSNR_DB = 20.0
"""Far below what crf 30 gives on camera footage (~37 dB), far above a wrong or garbled frame (<15 dB)."""


@dataclass(frozen=True)
class VerifyReport:
    """What verification found."""

    num_frames: int
    min_psnr_db: float
    """Lowest PSNR among the compared frames (inf when identical, nan when none compared)."""


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def verify_video(
    video_path: Path | BinaryIO,
    expected_frames: int,
    references: Mapping[int, np.ndarray],
    min_psnr_db: float = DEFAULT_MIN_PSNR_DB,
    fingerprints: Sequence[Fingerprint] | None = None,
) -> VerifyReport:
    """Decode every frame; check the count and the PSNR of ``references`` (index -> RGB source).

    With ``fingerprints`` (one per source frame, from the encode), every decoded frame is also
    compared with its own source frame tile by tile (:func:`robovid.fingerprint.compare`): a
    tile that shows the previous frame's content, or is far off its own, fails.
    Raises VerificationError saying what differs; the caller keeps the source frames.
    """
    count = 0
    worst = math.nan
    if not isinstance(video_path, Path):
        video_path.seek(0)
    source = str(video_path) if isinstance(video_path, Path) else video_path
    name = str(video_path) if isinstance(video_path, Path) else "the encoded episode"
    try:
        with av.open(source, "r") as container:
            stream = container.streams.video[0]
            stream.thread_count = DECODER_THREADS
            for index, frame in enumerate(container.decode(stream)):
                count += 1
                if fingerprints is not None and index < len(fingerprints):
                    _check_tiles(name, index, frame, fingerprints)
                if index in references:
                    value = psnr_db(frame.to_ndarray(format="rgb24"), references[index])
                    worst = value if math.isnan(worst) else min(worst, value)
                    if value < min_psnr_db:
                        raise VerificationError(
                            f"{name}: frame {index} differs from its PNG (PSNR {value:.1f} dB < "
                            f"{min_psnr_db} dB). The PNGs were kept."
                        )
    except av.error.FFmpegError as error:
        raise VerificationError(f"{name}: does not decode after frame {count} ({error}).") from error
    if count != expected_frames:
        raise VerificationError(f"{name}: holds {count} frames, expected {expected_frames}. The PNGs were kept.")
    return VerifyReport(count, worst)


def _check_tiles(name: str, index: int, frame: av.VideoFrame, fingerprints: Sequence[Fingerprint]) -> None:
    own = fingerprints[index]
    if frame.format.name != own.pix_fmt:
        frame = frame.reformat(format=own.pix_fmt)
    mismatch = compare(index, fingerprint(frame), own, fingerprints[index - 1] if index else None)
    if mismatch is not None:
        raise FrameMismatchError(
            f"{name}: {mismatch.describe()}. The encoder did not reproduce what the camera saw there; "
            "the PNGs were kept.",
            mismatch.frame,
            mismatch.rect(),
            mismatch.kind,
        )


def check_segment_decodes(segment: VideoSegment) -> None:
    """Decode the first and last frame of an appended segment from the chunk file itself."""
    movie = read_movie(segment.path)
    wanted = {segment.first_frame, segment.first_frame + segment.num_frames - 1}
    missing = []
    with av.open(str(segment.path)) as container:
        stream = container.streams.video[0]
        for index in sorted(wanted):
            if not _decodes_at(container, stream, int(movie.frame_start_ticks(index, 1)[0])):
                missing.append(index)
    if missing:
        raise VerificationError(
            f"{segment.path}: frames {missing} of the appended episode do not decode at their timestamps. "
            "The PNGs were kept."
        )


def _decodes_at(container: av.container.InputContainer, stream: av.video.stream.VideoStream, pts: int) -> bool:
    container.seek(pts, stream=stream, backward=True)
    for frame in container.decode(stream):
        if frame.pts is not None and frame.pts >= pts:
            return bool(frame.pts == pts)
    return False


ROOT_TOLERANCE_S = 1e-4
"""Timestamp tolerance of the decodes :func:`verify_root` makes."""


def verify_root(
    root: Path | str, backend: str = "pyav", shipped: Collection[Path] = (), remote: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Problems found (one dict per problem) and the number of segments checked.

    Each segment must be unique, lie inside its chunk file (by frame count), and have
    its first and last frames decode at ``from_timestamp`` and ``to_timestamp - 1/fps``.
    Segments in ``shipped`` files (copied elsewhere and deleted here) are checked in the
    copy under the ``remote`` root (the robot's prefix robovid-ship ships to), or skipped.
    ``root`` is a local folder or an fsspec URL (:mod:`robovid.remote`): a remote chunk's frame
    count comes from its movie box by range reads; a request the store fails is a problem of
    that segment (RemoteError for the segment table itself).
    """
    from robovid.decode import decode_video_frames

    rows = read_segments(root, all_takes=True).to_pylist()  # an earlier take's segment must still read back
    problems: list[dict[str, Any]] = []
    counts = Counter((r["video_key"], r["episode_index"], r["take"]) for r in rows)
    for (key, episode, take), count in counts.items():
        if count > 1:
            problems.append(_problem(key, episode, f"{count} metadata rows for one episode (take {take})"))
    frames_in: dict[Path | str, int] = {}
    records_in: dict[Path, tuple[Movie, dict[int, dict[str, Any]]]] = {}
    gone = set(shipped)
    for row in rows:
        path = chunk_location(root, row["video_key"], row["chunk_index"], row["file_index"])
        if path in gone and not exists(path):
            if remote is None:
                continue
            path = chunk_location(remote, row["video_key"], row["chunk_index"], row["file_index"])
        problem = _check_row(row, path, frames_in, decode_video_frames, backend)
        if problem is None and not is_url(path):
            problem = _record_problem(row, Path(path), records_in)
        if problem:
            problems.append(_problem(row["video_key"], row["episode_index"], problem))
    problems += _unclaimed_frames(root, rows, frames_in)
    return problems, len(rows)


def _record_problem(
    row: dict[str, Any], path: Path, records_in: dict[Path, tuple[Movie, dict[int, dict[str, Any]]]]
) -> str | None:
    """What the chunk file's identity record where the row's frames start says against the row, if it disagrees.

    Frames without a record (appended before records existed) are not judged. A record naming another episode,
    take or camera, or whose fingerprint does not match the samples, means the file was replaced or rewritten.
    """
    if path not in records_in:
        try:
            movie = read_movie(path)
            records_in[path] = (movie, {int(e["first_frame"]): e for e in read_records(movie)})
        except (RobovidError, OSError) as error:
            return f"{type(error).__name__}: {error}"
    movie, records = records_in[path]
    entry = records.get(row["first_frame"])
    if entry is None:
        return None
    said = entry["row"]
    mine = (row["video_key"], row["episode_index"], row["take"], row["num_frames"])
    theirs = (said.get("video_key"), said.get("episode_index"), said.get("take") or 0, entry["num_frames"])
    first, count = row["first_frame"], row["num_frames"]
    if mine != theirs or entry["sizes_sha256"] != sizes_digest(movie.table.sizes[first : first + count]):
        return (
            f"{path}: the file's own record at frame {first} says camera {theirs[0]!r} episode {theirs[1]} take "
            f"{theirs[2]} ({theirs[3]} frames){'' if mine != theirs else ', with other samples'}: the file was replaced "
            "or rewritten since the row was committed, and the row points at other frames. Put the right file back."
        )
    return None


def _unclaimed_frames(
    root: Path | str, rows: list[dict[str, Any]], frames_in: dict[Path | str, int]
) -> list[dict[str, Any]]:
    """One problem per run of a local chunk file's frames that no row claims (their episode's row was lost)."""
    if is_url(root):
        return []  # a remote root holds what robovid-ship verified and committed; its files are not listed here
    root = Path(root)
    claimed: dict[Path | str, set[int]] = {}
    for row in rows:
        path = chunk_location(root, row["video_key"], row["chunk_index"], row["file_index"])
        claimed.setdefault(path, set()).update(range(row["first_frame"], row["first_frame"] + row["num_frames"]))
    problems = []
    for camera in list_cameras(root):
        for location in list_chunks(root, camera):
            path = location.path(root, camera)
            try:
                if path not in frames_in:
                    frames_in[path] = read_movie(path).num_frames
            except (RobovidError, OSError) as error:
                if path not in claimed:  # a file rows name: their own checks said it already
                    problems.append(_problem(camera, None, f"{path} is unreadable: {type(error).__name__}: {error}"))
                continue
            free = sorted(set(range(frames_in[path])) - claimed.get(path, set()))
            for first, last in _runs(free):
                problems.append(
                    _problem(
                        camera,
                        None,
                        f"frames {first}..{last} of {path} are claimed by no row (an episode whose row was lost; "
                        "its PNGs were never deleted unless a row was committed): `robovid verify --repair` rebuilds "
                        "the row from the chunk file's record, with robovid-watch stopped",
                    )
                )
    return problems


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive numbers in sorted ``indices``."""
    runs: list[tuple[int, int]] = []
    for index in indices:
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


def _problem(key: str, episode: int | None, text: str) -> dict[str, Any]:
    return {"video_key": key, "episode_index": episode, "problem": text}


def _check_row(
    row: dict[str, Any], path: Path | str, frames_in: dict[Path | str, int], decode: Any, backend: str
) -> str | None:
    try:
        if path not in frames_in:
            if not exists(path):
                return f"chunk file {path} is missing"
            frames_in[path] = _num_frames(path)
        end = row["first_frame"] + row["num_frames"]
        if end > frames_in[path]:
            return f"{path} holds {frames_in[path]} frames, the segment needs frames up to {end}"
        last = row["to_timestamp"] - 1.0 / row["fps"]
        depth = bool(row.get("video.is_depth_map"))  # a depth camera's samples, as stored (not cut to RGB)
        frames = decode(path, [row["from_timestamp"], last], ROOT_TOLERANCE_S, backend, is_depth=depth)
        if tuple(frames.shape[:2]) != (2, 1 if depth else 3):
            return f"decoded an unexpected shape {tuple(frames.shape)}"
    except (RobovidError, OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _num_frames(path: Path | str) -> int:
    """Frames of a chunk file, from its movie box (a remote one's by range reads)."""
    if not is_url(path):
        return read_movie(Path(path)).num_frames
    handle, _ = open_video_file(str(path))
    with handle, store_errors(path):
        return read_movie(Path(str(path)), cast(BinaryIO, handle)).num_frames
