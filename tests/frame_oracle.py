"""The adversarial suite's oracle, frame by frame, and the recorders whose habits it tries.

Every frame a test's recorder wrote (or tried to write) is entered in a :class:`Ledger` under
its burnt-in identity: (camera, episode, frame) as :func:`robovid.synthetic.read_index` reads
it back, the path it was written to and the hash of its bytes. After every case the same
oracle holds (:func:`check_frames`): each frame is in exactly one committed segment (decoded
from the chunk file through its row, identified by the burnt-in index), or it is still on disk
as its original PNG, byte-identical. A frame that is neither was lost; a frame in two segments
was appended twice. A committed segment holds one take of one episode, frames 0..n-1 in order
(never a piece of an episode that starts in the middle). With ``final``, no chunk holds a frame
that no row claims.

It builds on :mod:`daemon_harness` (the daemon subprocess, rows, decoding).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon_harness import Daemon, decoded_indices, rows_by_key, wait_for
from PIL import Image

from robovid.layout import chunk_path, episode_dir
from robovid.synthetic import render_frame, scene

SIZE = (64, 48)


@dataclass(frozen=True, order=True)
class FrameId:
    """A frame as its burnt-in index names it, plus the camera it was recorded for."""

    camera: str
    episode: int
    """The episode burnt into the pixels (a re-take burns another number into the same folder)."""
    frame: int


@dataclass
class Ledger:
    """Every frame recorders wrote or tried to write: where, and the hash of its bytes."""

    root: Path
    written: dict[FrameId, tuple[Path, str]] = field(default_factory=dict)
    attempted: set[FrameId] = field(default_factory=set)
    """Frames the recorder tried to write; a write that failed leaves the frame only here (lost)."""
    moved: dict[Path, Path] = field(default_factory=dict)
    """Folders a test moved on purpose (old -> new): a frame's PNG may then be found at the new place."""
    size: tuple[int, int] = SIZE
    """(width, height) of the frames written from now on (a camera whose resolution changes)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _backgrounds: dict[tuple[int, tuple[int, int]], object] = field(default_factory=dict)

    def png_bytes(self, burnt_episode: int, frame: int, seed: int = 0) -> bytes:
        """The bytes of one synthetic frame, as a recorder would write them."""
        key = (seed, self.size)
        if key not in self._backgrounds:
            self._backgrounds[key] = scene(*self.size, seed)
        img = render_frame(self._backgrounds[key], *self.size, burnt_episode, frame)  # type: ignore[arg-type]
        out = io.BytesIO()
        Image.fromarray(img).save(out, format="PNG", compress_level=1)
        return out.getvalue()

    def write_frame(
        self,
        folder: Path,
        camera: str,
        burnt_episode: int,
        frame: int,
        *,
        make_dirs: bool = False,
        name: str | None = None,
        atomic: bool = False,
        mtime_ns: int | None = None,
    ) -> bool:
        """Write one frame into ``folder`` as a recorder does; False when the write failed (the frame is lost).

        ``make_dirs``: create the folder first (a recorder that calls makedirs before every frame).
        ``atomic``: write a hidden temp file and rename it into place. ``mtime_ns``: set the
        file's times afterwards (a recorder with a wrong clock).
        """
        key = FrameId(camera, burnt_episode, frame)
        data = self.png_bytes(burnt_episode, frame)
        path = folder / (name or f"frame-{frame:06d}.png")
        with self._lock:
            self.attempted.add(key)
        try:
            if make_dirs:
                folder.mkdir(parents=True, exist_ok=True)
            target = folder / f".{path.name}.part" if atomic else path
            with open(target, "wb") as f:
                f.write(data)
            if atomic:
                os.replace(target, path)
            if mtime_ns is not None:
                os.utime(path, ns=(mtime_ns, mtime_ns))
        except OSError:
            return False
        with self._lock:
            self.written[key] = (path, hashlib.sha256(data).hexdigest())
        return True

    def write_episode(
        self,
        camera: str,
        episode: int,
        num_frames: int = 8,
        *,
        folder: Path | None = None,
        burnt_episode: int | None = None,
        marker: str | None = ".complete",
        mtime_ns: int | None = None,
    ) -> Path:
        """A whole episode at once (frames, then the marker); returns its folder."""
        folder = folder or episode_dir(self.root, camera, episode)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(num_frames):
            assert self.write_frame(
                folder, camera, episode if burnt_episode is None else burnt_episode, i, mtime_ns=mtime_ns
            )
        if marker is not None:
            (folder / marker).touch()
        return folder

    def frames_of(self, camera: str, burnt_episode: int) -> list[FrameId]:
        return sorted(k for k in self.attempted if k.camera == camera and k.episode == burnt_episode)


@dataclass
class PausingRecorder:
    """Writes one episode a frame at a time, pausing between two frames (a recorder waiting for the robot)."""

    ledger: Ledger
    camera: str
    episode: int
    num_frames: int = 10
    pause_after: int = 5
    pause_s: float = 6.0
    period_s: float = 0.05
    make_dirs_each_frame: bool = False
    marker: str | None = None
    lost: list[int] = field(default_factory=list)
    """Frames the recorder could not write."""
    folder_vanished: list[int] = field(default_factory=list)
    """Frames before which the recorder found its folder gone (and, with makedirs, created it again)."""
    resumed: threading.Event = field(default_factory=threading.Event)
    """Set when the recorder starts writing again after its pause."""
    paused: threading.Event = field(default_factory=threading.Event)
    """Set when the recorder starts its pause; the test may wait for an observable outcome, then set ``go_on``."""
    go_on: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> PausingRecorder:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float = 120.0) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the recorder did not finish"

    def _run(self) -> None:
        folder = episode_dir(self.ledger.root, self.camera, self.episode)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(self.num_frames):
            if i == self.pause_after:
                self.paused.set()
                self.go_on.wait(self.pause_s)
                self.resumed.set()
            if not folder.is_dir():
                self.folder_vanished.append(i)
            if not self.ledger.write_frame(folder, self.camera, self.episode, i, make_dirs=self.make_dirs_each_frame):
                self.lost.append(i)
            time.sleep(self.period_s)
        if self.marker is not None:
            with contextlib.suppress(OSError):
                (folder / self.marker).touch()


def poll_until(condition: Callable[[], bool], timeout: float, daemon: Daemon | None = None) -> bool:
    """Like :func:`daemon_harness.wait_for`, but returns False at the deadline, so a test can check
    what matters most first and report this outcome after."""
    try:
        wait_for(condition, "", timeout=timeout, daemon=daemon)
    except AssertionError:
        return condition()
    return True


@dataclass
class Verdict:
    """What :func:`check_frames` found, for messages."""

    in_segment: set[FrameId] = field(default_factory=set)
    as_png: set[FrameId] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _segments(root: Path) -> tuple[Counter[FrameId], list[str], dict[Path, set[int]], dict[Path, int]]:
    """Frames claimed by committed rows (with counts), problems with rows, claimed spans and frame counts per file."""
    claimed: Counter[FrameId] = Counter()
    problems: list[str] = []
    spans: dict[Path, set[int]] = {}
    lengths: dict[Path, int] = {}
    decoded: dict[Path, list[tuple[int, int]]] = {}
    for (camera, episode), rows in sorted(rows_by_key(root).items()):
        if len(rows) > 1:
            problems.append(f"{camera!r} episode {episode}: {len(rows)} rows")
        for row in rows:
            path = chunk_path(root, camera, row["chunk_index"], row["file_index"])
            if path not in decoded:
                try:
                    decoded[path] = decoded_indices(path)
                except Exception as error:  # a missing or unreadable chunk: every frame of the row is not there
                    problems.append(f"{camera!r} episode {episode}: chunk {path} unreadable ({error})")
                    decoded[path] = []
                lengths[path] = len(decoded[path])
            first, count = row["first_frame"], row["num_frames"]
            frames = decoded[path][first : first + count]
            if len(frames) != count:
                problems.append(
                    f"{camera!r} episode {episode}: row needs frames {first}..{first + count - 1} of {path}"
                )
            takes = {e for e, _ in frames}
            if len(takes) > 1 or [f for _, f in frames] != list(range(len(frames))):
                problems.append(f"{camera!r} episode {episode}: segment is not one take's frames 0..n-1: {frames[:12]}")
            span = set(range(first, first + count))
            if spans.setdefault(path, set()) & span:
                problems.append(f"{camera!r} episode {episode}: overlaps another row in {path}")
            spans[path] |= span
            for burnt_episode, frame in frames:
                claimed[FrameId(camera, burnt_episode, frame)] += 1
    return claimed, problems, spans, lengths


def _png_intact(ledger: Ledger, key: FrameId) -> bool:
    path, digest = ledger.written[key]
    candidates = [path] + [new / path.relative_to(old) for old, new in ledger.moved.items() if old in path.parents]
    for candidate in candidates:
        try:
            if hashlib.sha256(candidate.read_bytes()).hexdigest() == digest:
                return True
        except OSError:
            continue
    return False


def check_frames(root: Path, ledger: Ledger, final: bool = False) -> Verdict:
    """The oracle (module docstring). Raises AssertionError listing every violation.

    Safe while a service runs: the PNGs are looked at before the rows are read. A PNG is deleted only
    after its row is committed, so a frame whose PNG was gone at the first look is in the rows read
    after it (reading the rows first would report a frame committed and cleaned in between as lost).
    """
    intact = {key for key in ledger.attempted if key in ledger.written and _png_intact(ledger, key)}
    claimed, problems, spans, lengths = _segments(root)
    verdict = Verdict(problems=problems)
    for key in sorted(ledger.attempted):
        count = claimed.get(key, 0)
        if count == 1:
            verdict.in_segment.add(key)
        elif count > 1:
            problems.append(f"{key}: in {count} segments")
        elif key in intact:
            verdict.as_png.add(key)
        else:
            where = ledger.written.get(key, (None, ""))[0]
            problems.append(f"{key}: LOST (in no segment, and its PNG {where} is gone or changed)")
    unknown = sorted(k for k in claimed if k not in ledger.attempted)
    if unknown:
        problems.append(f"segments hold frames no recorder wrote: {unknown[:8]}")
    if final:
        for path in sorted(root.glob("videos/*/chunk-*/file-*.mp4")):  # through symlinked folders too
            if path not in lengths:
                lengths[path] = len(decoded_indices(path))
            unclaimed = set(range(lengths[path])) - spans.get(path, set())
            if unclaimed:
                problems.append(f"{path}: frames {sorted(unclaimed)[:10]} claimed by no row")
    assert not problems, "frame oracle:\n  " + "\n  ".join(problems)
    return verdict
