"""kill -9 the real daemon at named points of every stage and at random moments; nothing is lost.

After each kill: every episode is either done exactly once (one row, its frames in the
chunk, no frame unaccounted for) or untouched (no row, PNGs byte-identical). After a
clean restart: every episode is done exactly once and its PNGs are gone.

Named points (``ROBOVID_FAULT_POINT=name:n`` kills the process the n-th time it gets there):
mid-encode, after encode, after the journal intent, while a new chunk file is written, mid-append
(after the new mdat, before the commit flip), after append before commit, mid-commit (before the Parquet rename), after
commit before cleanup, mid-cleanup, after cleanup before the intent is cleared.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from daemon_harness import (
    Episode,
    check_invariants,
    finish_and_check,
    png_digest,
    record,
    run_daemon,
    start_daemon,
    wait_for,
)

CAMERAS = ["a", "b"]
EPISODES = range(3)
NAMED_POINTS = [
    "encode:frame:3",
    "encode:frame:20",
    "stage:after-encode:1",
    "stage:after-encode:4",
    "stage:after-intent:1",
    "stage:after-intent:3",
    "append:creating:1",
    "append:creating:2",
    "append:after-mdat:1",
    "append:after-mdat:2",
    "append:before-flip:1",
    "append:before-flip:3",
    "stage:after-append:1",
    "stage:after-append:4",
    "commit:before-rename:1",
    "commit:before-rename:3",
    "stage:after-commit:1",
    "stage:after-commit:5",
    "clean:unlink:1",
    "clean:unlink:13",
    "clean:before-rmdir:1",
    "clean:before-rmdir:3",
    "clean:before-clear-intent:1",
    "clean:before-clear-intent:4",
]


def _recording(root: Path) -> tuple[list[Episode], dict[Episode, str]]:
    episodes = record(root, CAMERAS, EPISODES)
    return episodes, {e: png_digest(root, e) or "" for e in episodes}


@pytest.mark.parametrize("point", NAMED_POINTS)
def test_kill_at_a_named_point_then_restart_loses_nothing_and_appends_nothing_twice(tmp_path: Path, point: str) -> None:
    episodes, originals = _recording(tmp_path)
    result = run_daemon(tmp_path, timeout=120, ROBOVID_FAULT_POINT=point, ROBOVID_WORKERS="1")
    assert result.returncode == -signal.SIGKILL, f"{point} was never reached: {result.stderr[-2000:]}"
    check_invariants(tmp_path, episodes, originals, final=False)
    finish_and_check(tmp_path, episodes, originals)


SMALL_FILES = {"ROBOVID_VIDEO_FILE_SIZE_MB": "0.012"}
"""A new chunk file every two or three episodes, so kills also land in rollovers and compactions."""


def _random_kills(root: Path, kills: int, seed: int, **env: str) -> None:
    episodes, originals = _recording(root)
    rng = random.Random(seed)
    for attempt in range(kills):
        daemon = start_daemon(root, ROBOVID_WORKERS=str(rng.choice([1, 2])), **env)
        try:
            wait_for(lambda d=daemon: bool(d.events_named("started")), "started", daemon=daemon)
            time.sleep(rng.uniform(0.0, 0.8))
        finally:
            daemon.kill()
        try:
            check_invariants(root, episodes, originals, final=False)
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, kill {attempt}: {error}") from error
    finish_and_check(root, episodes, originals, **env)


def test_random_kills_ci(tmp_path: Path) -> None:
    seed = int(os.environ.get("ROBOVID_CRASH_SEED", "1234"))
    _random_kills(tmp_path, kills=8, seed=seed)


def test_random_kills_with_small_files_ci(tmp_path: Path) -> None:
    seed = int(os.environ.get("ROBOVID_CRASH_SEED", "1234"))
    _random_kills(tmp_path, kills=6, seed=seed, **SMALL_FILES)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_random_kills_stress(tmp_path: Path, seed: int) -> None:
    _random_kills(tmp_path, kills=20, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_random_kills_with_small_files_stress(tmp_path: Path, seed: int) -> None:
    _random_kills(tmp_path, kills=20, seed=seed, **SMALL_FILES)
