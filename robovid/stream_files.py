"""The files of one streamed camera episode: closed video segments, their fingerprints, the crash log.

A :class:`robovid.StreamingVideoEncoder` writes, per camera episode, into one folder (the handoff
folder ``layout.stream_dir(root, camera, episode)`` when robovid-watch finishes the episode):

- ``stream.json``: frame geometry, fps and encoder settings (written at the first frame);
- ``seg-JJJJJJ.mp4``: frames ``J*K .. J*K+K-1`` as a complete, fsynced MP4 (``K`` = segment
  frames), published by rename after ``seg-JJJJJJ.npz``: those frames' fingerprints (of the very
  YUV frames encoded) and per-channel byte counts (LeRobot statistics);
- ``raw-JJJJJJ.rgb``: the crash log: every frame fed for segment ``J``, raw RGB followed by a
  trailer of its index and the CRC-32 of its bytes (``LOG_FORMAT`` 2; logs of format 1 have no
  trailer), written by the feeding thread before the frame is queued for the encoder, deleted once
  ``seg-J`` is published; when it is synced, and what survives a crash or a power cut:
  :mod:`robovid.stream_log`;
- ``finished.json``: the frame count and how many of them are in segments (the rest are PNGs in
  the episode's normal folder), written when the episode is finished or salvaged;
- ``writer.lock``: flocked by the recording process while the episode is open.

:func:`robovid.stream_log.salvage` turns the folder of a writer that died into a finished one:
every logged frame not in a segment becomes a PNG in the episode folder. So every frame whose
``feed_frame`` returned is then in a segment or a PNG.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, cast

import av
import imagecodecs
import numpy as np
import numpy.typing as npt

from robovid.durable import fsync_dir, fsync_file, temp_path_for, write_bytes_durably
from robovid.encode import DEMOTE_EVERY_FRAMES, _check_options_used, demote_realtime_threads
from robovid.errors import StreamingError
from robovid.fingerprint import Fingerprint
from robovid.layout import frame_path
from robovid.lerobot_stats import downsample
from robovid.settings import EncoderSettings

STREAM_JSON = "stream.json"
FINISHED_JSON = "finished.json"
WRITER_LOCK = "writer.lock"
COMPLETE_MARKER = ".complete"
"""The marker a finished stream leaves in its episode folder (robovid-watch's default ``ROBOVID_COMPLETE_MARKER``)."""
SPILL_PNG_LEVEL = 1
"""zlib level of spilled PNGs: the recorder's thread writes them, so the fastest."""
LOG_FORMAT = 2
"""The crash log's record layout this robovid writes: 2 = frame bytes + ``TRAILER`` (1: frame bytes alone)."""
TRAILER = struct.Struct("<II")
"""After each frame's bytes in a format-2 log: the frame's index and the CRC-32 of its bytes. A record whose
trailer does not match (a write cut short, blocks a power cut left zero-filled or stale) is not a frame."""


def segment_path(folder: Path, number: int) -> Path:
    return folder / f"seg-{number:06d}.mp4"


def segment_data_path(folder: Path, number: int) -> Path:
    return folder / f"seg-{number:06d}.npz"


def raw_path(folder: Path, number: int) -> Path:
    return folder / f"raw-{number:06d}.rgb"


def log_trailer(index: int, data: memoryview) -> bytes:
    """The trailer written after frame ``index``'s ``data`` in a format-2 crash log."""
    return TRAILER.pack(index, zlib.crc32(data))


def log_record_ok(index: int, record: bytes, frame_bytes: int) -> bool:
    """Whether a format-2 ``record`` (frame bytes + trailer) is frame ``index`` exactly as it was written."""
    if len(record) != frame_bytes + TRAILER.size:
        return False
    data = memoryview(record)[:frame_bytes]
    return TRAILER.unpack_from(record, frame_bytes) == (index, zlib.crc32(data))


def channel_counts(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Per-channel byte counts (3 x 256) of a frame downsampled as LeRobot's statistics do."""
    small = downsample(rgb)
    return np.stack([np.bincount(small[..., c].ravel(), minlength=256) for c in range(3)]).astype(np.int64)


@dataclass(frozen=True)
class StreamInfo:
    """``stream.json``: what a reader needs to use the segments and the crash log."""

    camera: str
    episode: int
    fps: Fraction
    width: int
    height: int
    segment_frames: int
    settings: dict[str, Any]
    log_format: int = LOG_FORMAT

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3

    @property
    def record_bytes(self) -> int:
        """Bytes of one frame's record in the crash log."""
        return self.frame_bytes + (TRAILER.size if self.log_format >= 2 else 0)

    def encoder_settings(self) -> EncoderSettings:
        data = dict(self.settings)
        data["extra_options"] = tuple(sorted(dict(data.get("extra_options") or {}).items()))
        return EncoderSettings(**data)

    def write(self, folder: Path) -> None:
        data = {
            "camera": self.camera,
            "episode": self.episode,
            "fps": str(self.fps),
            "width": self.width,
            "height": self.height,
            "segment_frames": self.segment_frames,
            "settings": self.settings,
            "log_format": self.log_format,
        }
        write_bytes_durably(folder / STREAM_JSON, json.dumps(data, sort_keys=True).encode())

    @staticmethod
    def read(folder: Path) -> StreamInfo | None:
        data = _read_record(folder / STREAM_JSON)
        if data is None:
            return None
        with _damaged(folder / STREAM_JSON):
            return StreamInfo(
                str(data["camera"]),
                int(data["episode"]),
                Fraction(data["fps"]),
                int(data["width"]),
                int(data["height"]),
                int(data["segment_frames"]),
                dict(data["settings"]),
                int(data.get("log_format", 1)),  # written before log records had trailers
            )


def settings_dict(settings: EncoderSettings) -> dict[str, Any]:
    """The settings as ``stream.json`` keeps them (``EncoderSettings.to_tag``'s JSON)."""
    data = EncoderSettings.from_tag(settings.to_tag())
    assert data is not None
    return data


@dataclass(frozen=True)
class Finished:
    """``finished.json``: ``num_frames`` fed; frames ``0..prefix_frames-1`` are in segments, the rest PNGs."""

    num_frames: int
    prefix_frames: int
    salvaged: bool = False
    torn_frames: int = 0
    """Salvaged: frames found after the log's torn end (a power cut), left out of the episode."""

    def write(self, folder: Path) -> None:
        data = {
            "num_frames": self.num_frames,
            "prefix_frames": self.prefix_frames,
            "salvaged": self.salvaged,
            "torn_frames": self.torn_frames,
        }
        write_bytes_durably(folder / FINISHED_JSON, json.dumps(data).encode())

    @staticmethod
    def read(folder: Path) -> Finished | None:
        data = _read_record(folder / FINISHED_JSON)
        if data is None:
            return None
        with _damaged(folder / FINISHED_JSON):
            return Finished(
                int(data["num_frames"]),
                int(data["prefix_frames"]),
                bool(data.get("salvaged", False)),
                int(data.get("torn_frames", 0)),
            )


def _read_record(path: Path) -> dict[str, Any] | None:
    """A handoff record's JSON object, None when it does not exist; StreamingError when it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    with _damaged(path):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        return data


@contextlib.contextmanager
def _damaged(path: Path) -> Iterator[None]:
    """A record this version cannot read (damaged, or another version's) as StreamingError naming it."""
    try:
        yield
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:
        raise StreamingError(
            f"{path}: not a streaming record this robovid can read ({type(error).__name__}: {error}). The handoff's "
            "segments, crash log and PNGs were kept: check the file, or move the handoff folder away."
        ) from error


def published_segments(folder: Path) -> list[int]:
    """Numbers of the segments published, 0.. without a gap (a later one after a gap is not counted)."""
    numbers: list[int] = []
    while segment_path(folder, len(numbers)).exists():
        numbers.append(len(numbers))
    return numbers


# segment files -------------------------------------------------------------------------------
class SegmentWriter:
    """Encodes frames into one segment: a complete MP4 written to a temp file, published by :meth:`publish`."""

    def __init__(self, folder: Path, number: int, fps: Fraction, settings: EncoderSettings, width: int, height: int):
        self.folder, self.number, self.settings = folder, number, settings
        self._temp = temp_path_for(segment_path(folder, number))
        self._file = open(self._temp, "w+b")  # noqa: SIM115 - closed by publish/abandon
        self._container = av.open(cast(BinaryIO, self._file), "w", format="mp4")
        self._container.metadata["comment"] = settings.to_tag()
        self._stream = cast(
            av.video.stream.VideoStream,
            self._container.add_stream(settings.encoder_name, rate=fps, options=settings.codec_options()),
        )
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, settings.pix_fmt
        self.fingerprints: list[Fingerprint] = []
        self.counts = np.zeros((3, 256), np.int64)
        self.frames = 0

    def encode(self, frame: av.VideoFrame, fp: Fingerprint, counts: npt.NDArray[np.int64]) -> None:
        self._container.mux(self._stream.encode(frame))
        if self.frames == 0:
            _check_options_used(self._stream, self.settings)
        if self.frames % DEMOTE_EVERY_FRAMES == 0:
            demote_realtime_threads()
        self.fingerprints.append(fp)
        self.counts += counts
        self.frames += 1

    def publish(self) -> Path:
        """Flush the encoder, close the MP4, write the fingerprints, then rename the segment into place."""
        self._container.mux(self._stream.encode(None))
        self._container.close()
        self._file.close()
        fsync_file(self._temp)
        write_segment_data(self.folder, self.number, self.fingerprints, self.counts)
        final = segment_path(self.folder, self.number)
        os.replace(self._temp, final)
        fsync_dir(self.folder)
        return final

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self._container.close()
        self._file.close()
        self._temp.unlink(missing_ok=True)


def write_segment_data(
    folder: Path, number: int, fingerprints: list[Fingerprint], counts: npt.NDArray[np.int64]
) -> None:
    first = fingerprints[0]
    arrays: dict[str, Any] = {
        f"plane{k}": np.stack([fp.planes[k] for fp in fingerprints]) for k in range(len(first.planes))
    }
    arrays["meta"] = np.array(
        json.dumps(
            {
                "width": first.width,
                "height": first.height,
                "scales": first.scales,
                "pix_fmt": first.pix_fmt,
                "planes": len(first.planes),
            }
        )
    )
    arrays["counts"] = counts
    final = segment_data_path(folder, number)
    temp = temp_path_for(final)
    with open(temp, "wb") as f:
        np.savez(f, **arrays)
    fsync_file(temp)
    os.replace(temp, final)


def read_segment_data(folder: Path, number: int) -> tuple[list[Fingerprint], npt.NDArray[np.int64]]:
    """A segment's fingerprints (one per frame) and byte counts."""
    with np.load(segment_data_path(folder, number), allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        planes = [data[f"plane{k}"] for k in range(meta["planes"])]
        counts = np.asarray(data["counts"], np.int64)
    scales = tuple(tuple(s) for s in meta["scales"])
    fingerprints = [
        Fingerprint(tuple(p[i] for p in planes), meta["width"], meta["height"], scales, meta["pix_fmt"])
        for i in range(len(planes[0]))
    ]
    return fingerprints, counts


# spilled frames ------------------------------------------------------------------------------
def write_png(folder: Path, index: int, rgb: npt.NDArray[np.uint8], durable: bool = False) -> Path:
    """Frame ``index`` as ``frame-XXXXXX.png`` in ``folder``: a hidden temp file renamed into place.

    A kill mid-write leaves only the temp file; the name appears whole or not at all. ``durable``:
    its bytes are fsynced before the rename (the caller fsyncs ``folder`` before it relies on the name).
    """
    final = frame_path(folder, index)
    temp = final.with_name(f".{final.name}.part")
    temp.write_bytes(imagecodecs.png_encode(rgb, level=SPILL_PNG_LEVEL))
    if durable:
        fsync_file(temp)
    os.replace(temp, final)
    return final


class SpillWriter(threading.Thread):
    """Writes spilled frames as PNGs, reading them back from the crash log.

    The recorder's thread only appends each frame to the log and puts its index here; the PNG
    compression happens on this thread (what spilling costs is measured by ``bench_streaming``,
    benchmarks/README.md). A log file holding only spilled frames is deleted once they are all PNGs;
    frames still waiting here stay in the log (page cache, then disk), so a backlog costs no memory
    that a crash would lose. ``durable``: each PNG is fsynced, and the folder before a log goes, so
    the frames never rest on an unsynced copy.
    """

    def __init__(
        self, folder: Path, png_dir: Path, shape: tuple[int, ...], segment_frames: int, first: int, durable: bool
    ) -> None:
        super().__init__(daemon=True, name="robovid-stream-spill")
        self.folder, self.png_dir, self.shape, self.durable = folder, png_dir, shape, durable
        self.segment_frames, self.first = segment_frames, first
        self.frame_bytes = int(np.prod(shape))
        self.record_bytes = self.frame_bytes + TRAILER.size
        self.indices: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.counts = np.zeros((3, 256), np.int64)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.png_dir.mkdir(parents=True, exist_ok=True)
            while (index := self.indices.get()) is not None:
                number, offset = divmod(index, self.segment_frames)
                raw = raw_path(self.folder, number)
                with open(raw, "rb") as log:
                    log.seek(offset * self.record_bytes)
                    record = log.read(self.record_bytes)
                if not log_record_ok(index, record, self.frame_bytes):
                    raise StreamingError(f"{raw}: the record of frame {index} does not match its trailer.")
                rgb = np.frombuffer(record, np.uint8, self.frame_bytes).reshape(self.shape)
                write_png(self.png_dir, index, rgb, self.durable)
                self.counts += channel_counts(rgb)
                if offset == self.segment_frames - 1 and number > self.first // self.segment_frames:
                    self._sync_folder()
                    raw_path(self.folder, number).unlink()  # it held spilled frames only, now all (durable) PNGs
            self._sync_folder()
        except BaseException as error:  # reported by finish_episode; the frames stay in the log
            self.error = error

    def _sync_folder(self) -> None:
        if self.durable:
            fsync_dir(self.png_dir)

    def close(self) -> None:
        """Write what is queued (durably, with ``durable``), then stop."""
        self.indices.put(None)
        self.join()


# the writer's lock ---------------------------------------------------------------
def lock_writer(folder: Path) -> int | None:
    """Take ``writer.lock`` (non-blocking): the descriptor, or None while another process holds it."""
    fd = os.open(folder / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def png_indices(png_dir: Path) -> list[int]:
    try:
        names = os.listdir(png_dir)
    except FileNotFoundError:
        return []
    return sorted(int(n[6:12]) for n in names if n.startswith("frame-") and n.endswith(".png") and n[6:12].isdigit())
