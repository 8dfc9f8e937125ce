"""Run the real robovid-watch as a subprocess on a temp root, and check a root's invariants.

Everything here observes real files: the chunk videos (decoded with PyAV, frames
identified by their burnt-in index), the Parquet rows, the PNG folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from robovid._movie import read_movie
from robovid.depth import DEPTH_PIX_FMTS, frame_samples
from robovid.durable import is_temp_path
from robovid.layout import chunk_path, episode_dir
from robovid.metadata import read_segments
from robovid.synthetic import read_index, write_episode
from robovid.synthetic_depth import read_depth_index
from robovid_watch.state import Intent, RootState

DEADLINE_S = 120.0


def daemon_env(root: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOVID_")}
    env.update(
        ROBOVID_ROOT=str(root),
        ROBOVID_LOG_FORMAT="json",
        ROBOVID_MIN_FREE_MB="0",
        ROBOVID_RESCAN_S="2",
        ROBOVID_WORKERS="2",
        SVT_LOG="1",
    )
    env.update(overrides)
    return env


@dataclass
class Daemon:
    """A running robovid-watch with its JSON log events collected as they arrive."""

    process: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("event") == name]

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM once the service is up (before that, Python's default handler would just die)."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and not self.events_named("started") and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


DROP_FILE_PERMISSION_OVERRIDE = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
    "--",
]
"""Run as root but without the capabilities that ignore file modes, so ``chmod 000`` blocks it."""


def start_daemon(root: Path, prefix: list[str] | None = None, module: str = "robovid_watch.main", **env: str) -> Daemon:
    """Start ``python -m module`` (the service by default; ``robovid_watch.ship.main`` for the shipper)."""
    process = subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", module],
        env=daemon_env(root, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    daemon = Daemon(process)
    daemon._threads = [
        threading.Thread(target=_pump_events, args=(process, daemon.events), daemon=True),
        threading.Thread(target=_pump_lines, args=(process, daemon.stderr), daemon=True),
    ]
    for thread in daemon._threads:
        thread.start()
    return daemon


def _pump_events(process: subprocess.Popen[str], sink: list[dict[str, Any]]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        with contextlib.suppress(json.JSONDecodeError):
            sink.append(json.loads(line))


def _pump_lines(process: subprocess.Popen[str], sink: list[str]) -> None:
    assert process.stderr is not None
    sink.extend(process.stderr)


def run_daemon(
    root: Path, timeout: float = 60.0, module: str = "robovid_watch.main", **env: str
) -> subprocess.CompletedProcess[str]:
    """Run robovid-watch (or another entry point) to its exit (for configuration errors, locks, fault points)."""
    return subprocess.run(
        [sys.executable, "-m", module],
        env=daemon_env(root, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class PointHooks:
    """The daemon's test hooks at named points (``robovid._faults``): count its passes, hold a thread there.

    Start the daemon with ``**hooks.env``. A held thread waits until :meth:`release`, or until the
    daemon is asked to stop (for the points that pass the stop event), so a test can stop it there.
    """

    directory: Path

    @property
    def env(self) -> dict[str, str]:
        return {"ROBOVID_TEST_POINTS": str(self.directory)}

    def hold(self, name: str, episode: int | None = None) -> None:
        """Hold every thread at the point, or only one working on ``episode``."""
        self._hold_file(name, episode).touch()

    def release(self, name: str, episode: int | None = None) -> None:
        self._hold_file(name, episode).unlink(missing_ok=True)

    def _hold_file(self, name: str, episode: int | None) -> Path:
        return self.directory / (f"{name}.hold" if episode is None else f"{name}.episode-{episode}.hold")

    def passes(self, name: str) -> int:
        """How many times the daemon has reached the point."""
        try:
            return (self.directory / f"{name}.passed").stat().st_size
        except FileNotFoundError:
            return 0

    def wait_passes(self, name: str, count: int, daemon: Daemon, timeout: float = DEADLINE_S) -> None:
        """Wait until the daemon has reached the point ``count`` times in all."""
        wait_for(lambda: self.passes(name) >= count, f"{count} passes through {name}", timeout, daemon)


def run_cli(
    *args: str, root: Path | None = None, timeout: float = 300, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``robovid`` command line to its exit, with the environment the daemon would get."""
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "robovid_watch.cli", *args],
        env=daemon_env(root or Path(".")),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S, daemon: Daemon | None = None
) -> None:
    """Poll ``condition`` until true; fail with ``what`` (and the daemon's stderr) at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if daemon is not None and daemon.process.poll() is not None:
            raise AssertionError(
                f"daemon exited ({daemon.process.returncode}) while waiting for {what}: {daemon.stderr[-20:]}"
            )
        time.sleep(0.05)
    tail = daemon.stderr[-20:] if daemon else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}. {tail}")


# recordings --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Episode:
    camera: str
    index: int
    num_frames: int


def record(
    root: Path, cameras: list[str], episodes: range, num_frames: int = 8, size: tuple[int, int] = (64, 48)
) -> list[Episode]:
    """Write complete episodes the way a recorder does (frames, then the marker)."""
    out = []
    for index in episodes:
        for number, camera in enumerate(cameras):
            write_episode(episode_dir(root, camera, index), index, num_frames, size[0], size[1], seed=number)
            out.append(Episode(camera, index, num_frames))
    return out


def png_digest(root: Path, episode: Episode) -> str | None:
    """Hash of an episode's PNG files (None when the folder is gone or holds no frame: settle mode keeps
    an emptied folder for a recorder that was only pausing).

    Safe to call while a daemon cleans the folder: a frame deleted between the listing and
    the read makes it look again, so a folder being removed reads as gone or as changed.
    """
    directory = episode_dir(root, episode.camera, episode.index)
    while directory.exists():
        digest = hashlib.sha256()
        try:
            frames = sorted(directory.glob("frame-*.png"))
            for path in frames:
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
        except FileNotFoundError:
            continue
        return digest.hexdigest() if frames else None
    return None


def rows_by_key(root: Path) -> dict[tuple[str, int], list[dict[str, Any]]]:
    grouped: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in read_segments(root).to_pylist():
        grouped[(row["video_key"], row["episode_index"])].append(row)
    return grouped


def decoded_indices(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as container:
        return [_burnt_index(frame) for frame in container.decode(video=0)]


def _burnt_index(frame: av.VideoFrame) -> tuple[int, int]:
    if frame.format.name in DEPTH_PIX_FMTS:  # a depth camera's chunk: robovid.synthetic_depth's index strip
        return read_depth_index(frame_samples(frame))
    return read_index(frame.to_ndarray(format="rgb24"))


def finish_and_check(
    root: Path,
    episodes: list[Episode],
    originals: dict[Episode, str],
    wait_for_event: str | None = None,
    **env: str,
) -> Daemon:
    """A fresh daemon finishes every episode (a row each, PNG folders gone), stops with 0; final invariants hold.

    With ``wait_for_event``, it also waits for that log event. Returns the stopped daemon, for its events.
    """
    daemon = start_daemon(root, **env)
    try:
        wait_for(lambda: len(rows_by_key(root)) == len(episodes), "every episode committed", daemon=daemon)
        wait_for(lambda: all(png_digest(root, e) is None for e in episodes), "every PNG folder cleaned", daemon=daemon)
        if wait_for_event is not None:
            wait_for(lambda: bool(daemon.events_named(wait_for_event)), wait_for_event, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    check_invariants(root, episodes, originals, final=True)
    return daemon


def check_invariants(root: Path, episodes: list[Episode], originals: dict[Episode, str], final: bool) -> None:
    """Every episode is done exactly once or untouched; with ``final``, every episode is done.

    Done exactly once: one metadata row; its frames, decoded from the chunk, are the
    episode's frames in order; no chunk holds a frame that no row accounts for (no
    double or orphan append); its PNG folder is gone (except, before the final run,
    while cleaning is pending). Untouched: no row and every PNG byte-identical.
    """
    rows = rows_by_key(root)
    decoded: dict[Path, list[tuple[int, int]]] = {}
    claimed: dict[Path, set[int]] = defaultdict(set)
    for episode in episodes:
        key = (episode.camera, episode.index)
        found = rows.get(key, [])
        assert len(found) <= 1, f"{key}: {len(found)} rows"
        if not found:
            assert png_digest(root, episode) == originals[episode], f"{key}: no row and PNGs not intact"
            assert not final, f"{key}: not processed by the final run"
            continue
        row = found[0]
        path = chunk_path(root, row["video_key"], row["chunk_index"], row["file_index"])
        if path not in decoded:
            decoded[path] = decoded_indices(path)
        frames = decoded[path][row["first_frame"] : row["first_frame"] + row["num_frames"]]
        assert frames == [(episode.index, i) for i in range(episode.num_frames)], f"{key}: wrong frames in {path}"
        span = set(range(row["first_frame"], row["first_frame"] + row["num_frames"]))
        assert not (claimed[path] & span), f"{key}: overlaps another segment"
        claimed[path] |= span
        if final:
            assert png_digest(root, episode) is None, f"{key}: done but its PNG folder remains"
        else:
            digest = png_digest(root, episode)
            assert digest is None or _subset_of_original(root, episode), f"{key}: PNGs changed"
    if not final:
        _claim_journaled_appends(root, claimed, decoded)
    for path, frames in decoded.items():
        assert claimed[path] == set(range(len(frames))), f"{path}: frames not accounted for by any row (double append?)"
        assert read_movie(path).num_frames == len(frames)
    if final:  # a restart removes what a killed run was publishing (a chunk being created, a part being committed)
        leftovers = [p for p in [*root.glob("videos/**/*"), *root.glob("meta/**/*")] if is_temp_path(p)]
        assert leftovers == [], f"temp files left behind: {leftovers}"


def _claim_journaled_appends(
    root: Path, claimed: dict[Path, set[int]], decoded: dict[Path, list[tuple[int, int]]]
) -> None:
    """An append cut off before its commit: the journal names it, and a restart commits it (checked by final)."""
    for intent in RootState(root, read_only=True).intents():
        if not isinstance(intent, Intent):
            continue  # damaged: a restart rolls its append back (tests/test_damaged_state.py)
        path = chunk_path(root, intent.camera, intent.chunk_index, intent.file_index)
        if (intent.camera, intent.episode) in rows_by_key(root) or not path.exists():
            continue
        if path not in decoded:
            decoded[path] = decoded_indices(path)
        span = range(intent.frames_before, intent.frames_before + intent.num_frames)
        if len(decoded[path]) == span.stop:
            assert decoded[path][span.start :] == [(intent.episode, i) for i in range(intent.num_frames)]
            claimed[path] |= set(span)


def _subset_of_original(root: Path, episode: Episode) -> bool:
    return all(p.name.startswith("frame-") for p in episode_dir(root, episode.camera, episode.index).glob("*.png"))


def chunk_files(root: Path) -> Iterator[Path]:
    yield from sorted((root / "videos").rglob("file-*.mp4"))
