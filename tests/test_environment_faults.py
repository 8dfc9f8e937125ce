"""The real robovid-watch in a hostile environment: full disk, read-only root, SIGTERM, a dead watcher.

Each case checks the root's invariants (every episode done exactly once or untouched,
see ``daemon_harness.check_invariants``) and then lets the daemon finish the rest.

Disk full uses a real small filesystem: a tmpfs mounted on a temp folder (needs root;
skipped otherwise, a failure under ``ROBOVID_REQUIRE_SYSTEM_TOOLS=1``), filled by a
preallocated ballast file so that space runs out exactly at the wanted step. The
amounts come from a rehearsal on the same kind of filesystem: the same episode is
run up to the end of its append (``ROBOVID_FAULT_POINT=stage:after-append:1``) and
the space it took is measured, so the test does not depend on how big the encoder's
output is or on whether the encode is spooled in memory or written to the state folder's ``tmp/``.

The second instance case lives in ``test_daemon_e2e.py``; SIGKILL cases in
``test_crash_consistency.py``.

A dying watchdog observer: nothing outside the process can kill watchdog's
dispatcher thread (it dies only when a handler raises), so one test runs the real
entry point with one extra handler that raises on the first event and expects exit
code 1 and an ``observer_died`` event. Deleting ``images/`` does stop watchdog's
inotify emitter (the observer thread lives on); another test expects the daemon to
notice that, or to keep hearing about new episodes, instead of going deaf.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from daemon_harness import (
    Daemon,
    Episode,
    PointHooks,
    check_invariants,
    daemon_env,
    finish_and_check,
    png_digest,
    record,
    rows_by_key,
    run_daemon,
    start_daemon,
    wait_for,
)

from robovid.durable import TEMP_MARK
from robovid.layout import chunk_path, episode_dir
from robovid_watch.state import RootState

CAMERA = "cam"
DISK_FULL_SIZE = (320, 240)
DISK_FULL_FRAMES = 30
TMPFS_MB = 32
STOP_BOUND_S = 30.0
"""systemd's TimeoutStopSec is 60 s; a clean stop must come well inside it."""


# system tools ------------------------------------------------------------------------------------
def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("ROBOVID_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(f"{reason}. ROBOVID_REQUIRE_SYSTEM_TOOLS=1 makes this a failure.")
    pytest.skip(reason)


@contextlib.contextmanager
def tmpfs(mount_point: Path, size_mb: int = TMPFS_MB) -> Iterator[Path]:
    """A size-limited tmpfs on ``mount_point`` for the duration of the block."""
    mount_point.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        _unavailable("no `mount` on PATH; the disk-full and read-only cases need a real small filesystem")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        _unavailable(f"cannot mount a tmpfs (root is needed): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def remount(mount_point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True, capture_output=True)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(mount_point: Path, leave_bytes: int) -> Path:
    """Preallocate a ballast file so that exactly ``leave_bytes`` stay free."""
    ballast = mount_point / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, free_bytes(mount_point) - leave_bytes)
    finally:
        os.close(fd)
    assert free_bytes(mount_point) == leave_bytes, "the filesystem does not account space page by page"
    return ballast


# observations ------------------------------------------------------------------------------------
def leftovers(root: Path) -> list[Path]:
    """Temp files anywhere under the root and anything in the state folder's tmp/: partial writes left behind."""
    temp_dir = RootState(root).tmp_dir
    found = [p for p in root.rglob("*") if TEMP_MARK in p.name]
    return found + (sorted(temp_dir.iterdir()) if temp_dir.exists() else [])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every file under the root by relative path, with a digest of its bytes."""
    return {p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def running(root: Path, **env: str) -> Iterator[Daemon]:
    """The daemon for the block; stopped by SIGTERM after it. Check ``daemon.process.returncode`` then."""
    daemon = start_daemon(root, **env)
    try:
        yield daemon
    finally:
        daemon.stop()


def stop_timed(daemon: Daemon) -> tuple[int, float]:
    started = time.monotonic()
    code = daemon.stop(timeout=60)
    return code, time.monotonic() - started


def finish(root: Path, episodes: list[Episode], originals: dict[Episode, str]) -> None:
    """A fresh daemon finishes every episode; then every invariant holds and `robovid verify` agrees."""
    finish_and_check(root, episodes, originals)
    assert_verify_passes(root)


def all_done(root: Path, episodes: list[Episode]) -> bool:
    rows = rows_by_key(root)
    return all((e.camera, e.index) in rows and png_digest(root, e) is None for e in episodes)


def assert_verify_passes(root: Path) -> None:
    cli = Path(sys.executable).with_name("robovid")
    result = subprocess.run([str(cli), "verify", str(root)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def log_events(output: str) -> list[dict[str, Any]]:
    events = []
    for line in output.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            events.append(json.loads(line))
    return events


# disk full ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiskFullSetup:
    """A root with episode 0 done (its chunk exists) and episode 1 waiting, and what episode 1 needs."""

    root: Path
    through_append_bytes: int
    """Space episode 1 takes up to the end of its append (journal intent, chunk growth, any temp file)."""
    append_growth_bytes: int
    """How much the append grows the chunk file."""

    def leave_bytes(self, stage: str, page: int) -> int:
        """Free space that makes the daemon run out during ``stage``."""
        if stage == "encode":
            return 0
        if stage == "append":
            return self.through_append_bytes - (self.append_growth_bytes // page // 2) * page
        return self.through_append_bytes  # enough for the append, not one byte for the metadata commit


EPISODES = [Episode(CAMERA, 0, DISK_FULL_FRAMES), Episode(CAMERA, 1, DISK_FULL_FRAMES)]


@pytest.fixture(scope="module")
def disk_full_setup(tmp_path_factory: pytest.TempPathFactory) -> DiskFullSetup:
    base = tmp_path_factory.mktemp("disk_full")
    template = base / "template"
    record(template, [CAMERA], range(1), DISK_FULL_FRAMES, DISK_FULL_SIZE)
    with running(template, ROBOVID_WORKERS="1") as daemon:
        wait_for(lambda: all_done(template, EPISODES[:1]), "episode 0 done", daemon=daemon)
    assert daemon.process.returncode == 0
    record(template, [CAMERA], range(1, 2), DISK_FULL_FRAMES, DISK_FULL_SIZE)
    with tmpfs(base / "rehearsal") as mount_point:
        root = mount_point / "root"
        shutil.copytree(template, root)
        chunk = chunk_path(root, CAMERA, 0, 0)
        size_before, free_before = chunk.stat().st_size, free_bytes(mount_point)
        result = run_daemon(root, timeout=120, ROBOVID_WORKERS="1", ROBOVID_FAULT_POINT="stage:after-append:1")
        assert result.returncode == -signal.SIGKILL, f"rehearsal never reached its append: {result.stderr[-2000:]}"
        setup = DiskFullSetup(template, free_before - free_bytes(mount_point), chunk.stat().st_size - size_before)
    assert setup.append_growth_bytes > 0 and setup.through_append_bytes > setup.append_growth_bytes
    return setup


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "fs") as mount_point:
        yield mount_point


def _disk_full_root(small_fs: Path, setup: DiskFullSetup, stage: str) -> tuple[Path, Path, dict[Episode, str]]:
    root = small_fs / "root"
    shutil.copytree(setup.root, root)
    originals = {EPISODES[1]: png_digest(root, EPISODES[1]) or ""}
    ballast = fill(small_fs, setup.leave_bytes(stage, os.statvfs(small_fs).f_frsize))
    return root, ballast, originals


def _first_disk_full(daemon: Daemon) -> dict[str, Any]:
    wait_for(lambda: bool(daemon.events_named("disk_full")), "a disk_full event", timeout=60, daemon=daemon)
    return daemon.events_named("disk_full")[0]


@pytest.mark.parametrize("stage", ["encode", "append", "commit"])
def test_disk_full_leaves_no_partial_file_and_work_resumes_once_space_is_freed(
    small_fs: Path, disk_full_setup: DiskFullSetup, stage: str
) -> None:
    """``encode``: no space at all when episode 1 is encoded (spooled in memory up to 64 MiB, so the first
    write to fail is its journal intent); ``append``: space runs out halfway through the in-place append to
    the chunk; ``commit``: the append fits, the metadata row does not."""
    root, ballast, originals = _disk_full_root(small_fs, disk_full_setup, stage)
    chunk = chunk_path(root, CAMERA, 0, 0)
    chunk_before = sha256(chunk)
    daemon = start_daemon(root, ROBOVID_WORKERS="1")
    try:
        event = _first_disk_full(daemon)
    finally:
        code, stop_s = stop_timed(daemon)
    assert code == 0 and stop_s < STOP_BOUND_S, f"exit {code} after {stop_s:.1f} s"
    assert event["episode"] == 1 and "No space left" in event["detail"] and "free space" in event["action"]
    assert not daemon.events_named("episode_failed"), "a full disk is not the episode's fault"
    assert leftovers(root) == []
    assert png_digest(root, EPISODES[1]) == originals[EPISODES[1]]
    assert set(rows_by_key(root)) == {(CAMERA, 0)}
    journaled = [(i.camera, i.episode) for i in RootState(root).intents()]
    if stage == "commit":
        assert journaled == [(CAMERA, 1)], "an append without its row must be journaled"
    else:
        assert sha256(chunk) == chunk_before, "the chunk must be byte-identical after a failed append"
        assert journaled == []
    check_invariants(root, EPISODES, originals, final=False)

    with running(root, ROBOVID_WORKERS="1") as daemon:  # restarted with the disk still full
        _first_disk_full(daemon)
        ballast.unlink()
        wait_for(lambda: all_done(root, EPISODES), "episode 1 done once space is back", daemon=daemon)
    assert daemon.process.returncode == 0
    check_invariants(root, EPISODES, originals, final=True)
    assert leftovers(root) == []
    assert_verify_passes(root)


def test_disk_full_at_commit_then_freed_while_running_commits_the_episode_once(
    small_fs: Path, disk_full_setup: DiskFullSetup
) -> None:
    root, ballast, originals = _disk_full_root(small_fs, disk_full_setup, "commit")
    with running(root, ROBOVID_WORKERS="1") as daemon:
        _first_disk_full(daemon)
        ballast.unlink()
        wait_for(lambda: all_done(root, EPISODES), "episode 1 done once space is back", daemon=daemon)
    assert daemon.process.returncode == 0
    check_invariants(root, EPISODES, originals, final=True)
    assert leftovers(root) == []


def test_low_disk_starts_no_episode_until_min_free_space_is_back(
    small_fs: Path, disk_full_setup: DiskFullSetup
) -> None:
    root = small_fs / "root"
    shutil.copytree(disk_full_setup.root, root)
    originals = {EPISODES[1]: png_digest(root, EPISODES[1]) or ""}
    ballast = fill(small_fs, 1024 * 1024)
    with running(root, ROBOVID_MIN_FREE_MB="2") as daemon:
        wait_for(lambda: bool(daemon.events_named("disk_low")), "a disk_low event", daemon=daemon)
        low = daemon.events_named("disk_low")[0]
        assert low["free_mb"] == 1 and low["min_free_mb"] == 2 and "ROBOVID_MIN_FREE_MB" in low["action"]
        assert not daemon.events_named("episode_started")
        assert png_digest(root, EPISODES[1]) == originals[EPISODES[1]]
        ballast.unlink()
        wait_for(lambda: all_done(root, EPISODES), "episode 1 done once space is back", daemon=daemon)
    assert daemon.process.returncode == 0 and daemon.events_named("disk_space_back")
    check_invariants(root, EPISODES, originals, final=True)


# read-only root ----------------------------------------------------------------------------------
@pytest.mark.parametrize("history", ["fresh", "in_use"])
def test_read_only_root_fails_cleanly_naming_the_problem_and_touches_nothing(
    small_fs: Path, disk_full_setup: DiskFullSetup, history: str
) -> None:
    """``fresh``: a root the service never saw; ``in_use``: one with chunks, rows and robovid's state folder."""
    root = small_fs / "root"
    if history == "in_use":
        shutil.copytree(disk_full_setup.root, root)
        episodes = EPISODES
    else:
        episodes = record(root, [CAMERA], range(1, 2), num_frames=2)
    originals = {e: png_digest(root, e) or "" for e in episodes if png_digest(root, e)}
    before = snapshot(root)
    remount(small_fs, "ro")
    try:
        result = run_daemon(root, timeout=60)
        after = snapshot(root)
    finally:
        remount(small_fs, "rw")
    assert result.returncode not in (0, 78), "read-only is not a configuration error nor a clean stop"
    errors = [e for e in log_events(result.stdout) if e.get("level") == "error"]
    assert errors, f"no error event: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    message = json.dumps(errors)
    assert "Read-only file system" in message and str(root) in message
    assert after == before, "nothing under a read-only root may change"
    finish(root, episodes, originals)


# SIGTERM -----------------------------------------------------------------------------------------
SIGTERM_SIZE = (480, 360)
"""At 640x480 the default encoder (libsvtav1, crf 30, g 2) blurs cells of the burnt-in index strip."""
SIGTERM_FRAMES = 60
SIGTERM_EPISODES = [Episode(CAMERA, 0, SIGTERM_FRAMES), Episode(CAMERA, 1, SIGTERM_FRAMES)]


@pytest.fixture(scope="module")
def sigterm_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sigterm") / "template"
    record(root, [CAMERA], range(2), SIGTERM_FRAMES, SIGTERM_SIZE)
    return root


SIGTERM_POINTS = {"encode": "encode:frame", "append": "stage:after-intent", "clean": "clean:unlink"}
"""Where episode 0 is held when SIGTERM comes: its first frame encoded, its journal intent written, its first PNG deleted."""


def _names(directory: Path) -> list[str]:
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        return [e.name for e in entries]
    return []


def _pngs_left(root: Path, episode: int) -> int:
    return sum(1 for name in _names(episode_dir(root, CAMERA, episode)) if name.endswith(".png"))


def _journal_holds_an_intent(root: Path) -> bool:
    return any(name.endswith(".json") and TEMP_MARK not in name for name in _names(RootState(root).journal_dir))


@pytest.mark.parametrize("stage", ["encode", "append", "clean"])
def test_sigterm_during_a_stage_stops_cleanly_within_the_stop_timeout_and_a_restart_finishes(
    tmp_path: Path, sigterm_recording: Path, stage: str, points: PointHooks
) -> None:
    """SIGTERM while episode 0 is encoded (it is abandoned, PNGs kept), right when its journal intent
    appears (append, commit and clean are never interrupted), or when its first PNG is deleted.

    The worker is held at that point (SIGTERM releases it), so the signal lands there on any machine."""
    root = tmp_path / "root"
    shutil.copytree(sigterm_recording, root)
    originals = {e: png_digest(root, e) or "" for e in SIGTERM_EPISODES}
    point = SIGTERM_POINTS[stage]
    points.hold(point)
    daemon = start_daemon(root, ROBOVID_WORKERS="1", **points.env)
    reached = {
        "encode": lambda: bool(daemon.events_named("episode_started")),
        "append": lambda: _journal_holds_an_intent(root),
        "clean": lambda: 0 < _pngs_left(root, 0) < SIGTERM_FRAMES,
    }[stage]
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        points.wait_passes(point, 1, daemon)
        wait_for(reached, f"episode 0 held in its {stage} stage", daemon=daemon)
    finally:
        code, stop_s = stop_timed(daemon)
    print(f"SIGTERM at {stage}: stopped in {stop_s:.2f} s")
    assert code == 0 and stop_s < STOP_BOUND_S, f"exit {code} after {stop_s:.1f} s"
    assert daemon.events_named("stopped")
    check_invariants(root, SIGTERM_EPISODES, originals, final=False)
    assert leftovers(root) == []
    rows = rows_by_key(root)
    if stage == "encode":
        assert daemon.events_named("episode_abandoned"), "the encode was not abandoned"
        assert not rows and png_digest(root, SIGTERM_EPISODES[0]) == originals[SIGTERM_EPISODES[0]]
    else:
        assert (CAMERA, 0) in rows and png_digest(root, SIGTERM_EPISODES[0]) is None, "a started append finishes"
    assert (CAMERA, 1) not in rows and png_digest(root, SIGTERM_EPISODES[1]) == originals[SIGTERM_EPISODES[1]]
    finish(root, SIGTERM_EPISODES, originals)


# the file watcher --------------------------------------------------------------------------------
DIE_ON_FIRST_EVENT = """
import sys
from watchdog.events import FileSystemEventHandler
import robovid_watch.service as service
from robovid_watch.main import main

class Raising(FileSystemEventHandler):
    def on_any_event(self, event):
        raise RuntimeError("a handler bug kills watchdog's dispatcher thread (test)")

real_start_observer = service.start_observer

def start_observer(root, hints):
    observer = real_start_observer(root, hints)
    observer.schedule(Raising(), str(root / "images"), recursive=True)
    return observer

service.start_observer = start_observer
sys.exit(main([]))
"""


def test_watchdog_dispatcher_thread_dying_makes_the_daemon_exit_1_for_a_restart(tmp_path: Path) -> None:
    episodes = record(tmp_path, ["a", "b"], range(2), num_frames=4)
    originals = {e: png_digest(tmp_path, e) or "" for e in episodes}
    result = subprocess.run(
        [sys.executable, "-c", DIE_ON_FIRST_EVENT], env=daemon_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    events = log_events(result.stdout)
    assert result.returncode == 1, result.stderr[-2000:]
    died = [e for e in events if e["event"] == "observer_died"]
    assert died and "watchdog" in died[0]["detail"], result.stdout[-2000:]
    assert "a handler bug kills" in result.stderr
    assert events[-1]["event"] == "observer_died", "work in flight is finished or abandoned before the exit"
    check_invariants(tmp_path, episodes, originals, final=False)
    assert leftovers(tmp_path) == []
    finish(tmp_path, episodes, originals)


def test_deleting_the_images_folder_does_not_leave_the_daemon_deaf(tmp_path: Path) -> None:
    """``rm -rf images/`` stops watchdog's inotify emitter. The daemon must notice (exit 1, so
    systemd restarts it) or keep hearing of new episodes; the rescan is set too slow to rescue it."""
    daemon = start_daemon(tmp_path, ROBOVID_RESCAN_S="300")
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        first = record(tmp_path, [CAMERA], range(1), num_frames=2)
        wait_for(lambda: all_done(tmp_path, first), "an episode found through its events", daemon=daemon)
        # its folders are removed up to images/ before episode_done: rm -rf must not race that removal
        wait_for(lambda: bool(daemon.events_named("episode_done")), "episode_done", daemon=daemon)
        shutil.rmtree(tmp_path / "images")
        (tmp_path / "images").mkdir()
        second = record(tmp_path, [CAMERA], range(1, 2), num_frames=2)
        originals = {e: png_digest(tmp_path, e) or "" for e in second}
        wait_for(
            lambda: daemon.process.poll() is not None or all_done(tmp_path, second),
            "the daemon to exit or to process the episode recorded after images/ was recreated",
            timeout=20,
        )
    finally:
        code = daemon.stop()
    if daemon.process.returncode != 0:
        assert code == 1 and daemon.events_named("observer_died")
        finish(tmp_path, first + second, originals)
    check_invariants(tmp_path, first + second, originals, final=True)


# inotify overflow --------------------------------------------------------------------------------
MAX_QUEUED_EVENTS = Path("/proc/sys/fs/inotify/max_queued_events")
OVERFLOW_EPISODES = 320


@contextlib.contextmanager
def inotify_queue_limit(limit: int) -> Iterator[None]:
    """Lower the per-instance inotify queue for instances created inside the block (the kernel reads it
    at inotify_init), so other processes on the machine are affected for as short a time as possible."""
    try:
        previous = MAX_QUEUED_EVENTS.read_text()
        MAX_QUEUED_EVENTS.write_text(str(limit))
    except OSError as error:
        _unavailable(f"cannot lower {MAX_QUEUED_EVENTS} (root is needed): {error}")
    try:
        yield
    finally:
        MAX_QUEUED_EVENTS.write_text(previous)


def test_inotify_queue_overflow_loses_no_episode_the_rescan_finds_them_all(tmp_path: Path) -> None:
    """A 16-event inotify queue, then 320 finished episode folders moved into images/ at once."""
    root, staging = tmp_path / "root", tmp_path / "staging"
    episodes = record(staging, [CAMERA], range(OVERFLOW_EPISODES), num_frames=2)
    originals = {e: png_digest(staging, e) or "" for e in episodes}
    episode_dir(root, CAMERA, 0).parent.mkdir(parents=True)  # watched before the flood
    with inotify_queue_limit(16):
        daemon = start_daemon(root, ROBOVID_RESCAN_S="2")
        try:
            wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        except BaseException:
            daemon.kill()
            raise
    try:
        for e in episodes:
            os.rename(episode_dir(staging, e.camera, e.index), episode_dir(root, e.camera, e.index))
        wait_for(
            lambda: all_done(root, episodes),
            f"all {len(episodes)} episodes done",
            timeout=120 + len(episodes) * 0.5,  # a deadline for the outcome, not a speed claim (as test_load)
            daemon=daemon,
        )
    finally:
        daemon.stop()
    assert daemon.process.returncode == 0
    logged = "".join(daemon.stderr) + json.dumps(daemon.events)
    assert "overflow" in logged.lower(), "the inotify queue never overflowed: this test proved nothing"
    check_invariants(root, episodes, originals, final=True)
