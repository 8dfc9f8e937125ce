"""The streaming encoder's durability contract, checked on a real ``strace`` log of a recorder.

The contract (robovid/stream_log.py): when the recorder reads ``durable_frames[camera] == d``,
frames ``0..d-1`` survive a power cut; when ``finish_episode`` returned, all of them do. The
recorder under trace writes a marker after each such reading (``fed I durable D``) and after the
finish (``finished N``) into a markers file, so the marker's ``write`` is a point of the trace.
Under ``syscall_trace``'s model of what a power cut keeps, each frame ``f < D`` must then be, by
the marker's line:

- in its crash log ``raw-J.rgb`` (not unlinked yet): the write that put its last byte there
  fsynced by a call that started after that write returned, and the log's creation made durable
  by an fsync of the folder after it; or, once that log was unlinked,
- a PNG ``frame-f.png`` renamed into place with its data fsynced first and its folder fsynced
  before the log's unlink; or, for a frame of a published segment, ``seg-J.mp4`` renamed into
  place with its data fsynced first and the stream folder fsynced before the log's unlink.
"""

from __future__ import annotations

import re
from pathlib import Path

from syscall_trace import Op, Trace, Violation

MARKER = re.compile(rb"fed (\d+) durable (\d+)|finished (\d+)")


def check_stream_durability(
    trace: Trace, folder: Path, png_dir: Path, markers: Path, segment_frames: int, record_bytes: int
) -> tuple[list[Violation], int]:
    """The breaches of the contract, and how many (marker, frame) promises were checked."""
    checker = _Checker(trace, folder, png_dir, segment_frames, record_bytes)
    out: dict[tuple[int, str], Violation] = {}
    checked = 0
    for marker in (op for op in trace.of_kind("write") if op.path == str(markers)):
        match = MARKER.match(marker.data)
        if match is None:
            continue
        durable = int(match[2] if match[2] is not None else match[3])
        for frame in range(durable):
            checked += 1
            problem = checker.problem(frame, marker)
            if problem is not None:
                out.setdefault((frame, problem.message), problem)
    return list(out.values()), checked


class _Checker:
    def __init__(self, trace: Trace, folder: Path, png_dir: Path, segment_frames: int, record_bytes: int) -> None:
        self.trace, self.folder, self.png_dir = trace, str(folder), str(png_dir)
        self.segment_frames, self.record_bytes = segment_frames, record_bytes

    def raw(self, number: int) -> str:
        return f"{self.folder}/raw-{number:06d}.rgb"

    def problem(self, frame: int, marker: Op) -> Violation | None:
        number, record = divmod(frame, self.segment_frames)
        raw = self.raw(number)
        unlink = next((op for op in self.trace.of_kind("unlink") if op.path == raw and op.done < marker.seq), None)
        if unlink is None:
            return self._in_log(frame, raw, record, marker)
        png = self._published(f"{self.png_dir}/frame-{frame:06d}.png", self.png_dir, unlink)
        segment = self._published(f"{self.folder}/seg-{number:06d}.mp4", self.folder, unlink)
        if png is None or segment is None:
            return None
        message = f"frame {frame}: its log {Path(raw).name} was unlinked before a durable copy: {png}; {segment}"
        return Violation("stream", message, (unlink.call, marker.call))

    def _in_log(self, frame: int, raw: str, record: int, marker: Op) -> Violation | None:
        trace = self.trace
        covering, end = None, 0
        for write in (op for op in trace.of_kind("write") if op.path == raw and op.seq < marker.seq):
            end += write.size
            if end >= (record + 1) * self.record_bytes:  # the frame and its trailer
                covering = write
                break
        if covering is None:
            return Violation("stream", f"frame {frame} is not in {Path(raw).name} at the marker", (marker.call,))
        if trace.fsync_between(covering.fid, covering.done, marker.seq) is None:
            message = f"frame {frame} counted durable with its write to {Path(raw).name} not fsynced"
            return Violation("stream", message, (covering.call, marker.call))
        created = next(
            c for c in trace.calls if c.name == "openat" and c.ok and raw in c.result and "O_CREAT" in c.args[2]
        )
        if trace.dir_fsync_between(self.folder, created.done, marker.seq) is None:
            message = f"frame {frame} counted durable before the folder was fsynced after {Path(raw).name} was created"
            return Violation("stream", message, (created, marker.call))
        return None

    def _published(self, path: str, directory: str, before: Op) -> str | None:
        """Why ``path`` is not a durable published file by ``before`` (None when it is)."""
        rename = next((op for op in self.trace.of_kind("rename") if op.path == path and op.done < before.seq), None)
        if rename is None:
            return f"no {Path(path).name}"
        if self.trace.data_durable_before(rename) is not None:
            return f"{Path(path).name} renamed into place unsynced"
        if self.trace.dir_fsync_between(directory, rename.done, before.seq) is None:
            return f"{Path(directory).name} not fsynced after {Path(path).name} was renamed into place"
        return None
