"""A root in the old layout (``.robovid/``, ``meta/robovid/segments/``) keeps working and is moved crash-safely.

robovid's state now lives in ``.cache/huggingface/robovid/``, which LeRobot's ``push_to_hub``
never uploads (tests/test_lerobot_real.py lists what it would upload).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
from pathlib import Path

import pytest
from daemon_harness import (
    Episode,
    check_invariants,
    finish_and_check,
    png_digest,
    record,
    rows_by_key,
    run_cli,
    run_daemon,
)

from robovid.errors import MergeError
from robovid.layout import existing_segments_dir, legacy_segments_dir, legacy_state_dir, state_dir
from robovid.merge import merge_roots
from robovid.metadata import read_segments

CAMERAS = ["a", "b"]


def _to_old_layout(root: Path) -> None:
    new = state_dir(root)
    old = legacy_state_dir(root)
    old.mkdir()
    for name in ("journal", "failed", "tmp"):
        (new / name).rename(old / name)
    (old / "lock").write_text("")
    legacy_segments_dir(root).parent.mkdir(parents=True)
    (new / "segments").rename(legacy_segments_dir(root))
    shutil.rmtree(new)  # the lock and what the old layout did not have (retake requests)


def _processed(root: Path, episodes: range) -> tuple[list[Episode], dict[Episode, str]]:
    done = record(root, CAMERAS, episodes)
    originals = {e: png_digest(root, e) or "" for e in done}
    finish_and_check(root, done, originals)
    return done, originals


def test_an_old_root_is_read_where_it_is_and_moved_by_the_service(tmp_path: Path) -> None:
    old_episodes, old_originals = _processed(tmp_path, range(2))
    _to_old_layout(tmp_path)
    assert existing_segments_dir(tmp_path) == legacy_segments_dir(tmp_path)
    assert len(read_segments(tmp_path)) == 4  # the library reads a root not yet moved
    new_episodes = record(tmp_path, CAMERAS, range(2, 3))
    originals = {**old_originals, **{e: png_digest(tmp_path, e) or "" for e in new_episodes}}
    daemon = finish_and_check(tmp_path, [*old_episodes, *new_episodes], originals)
    assert daemon.events_named("state_moved")
    assert not legacy_state_dir(tmp_path).exists() and not (tmp_path / "meta" / "robovid").exists()
    assert existing_segments_dir(tmp_path) == state_dir(tmp_path) / "segments"
    assert len(rows_by_key(tmp_path)) == 6  # the old episodes were not encoded again


@pytest.mark.parametrize("point", ["migrate:after-journal:1", "migrate:after-failed:1", "migrate:after-segments:1"])
def test_a_move_killed_half_way_is_finished_by_the_next_start(tmp_path: Path, point: str) -> None:
    episodes, originals = _processed(tmp_path, range(2))
    _to_old_layout(tmp_path)
    killed = run_daemon(tmp_path, timeout=120, ROBOVID_FAULT_POINT=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(read_segments(tmp_path)) == 4  # in one place or the other, never lost
    check_invariants(tmp_path, episodes, originals, final=True)
    finish_and_check(tmp_path, episodes, originals)
    assert not legacy_state_dir(tmp_path).exists()
    assert len(read_segments(tmp_path)) == 4


def test_an_older_robovid_holding_the_old_lock_keeps_the_root(tmp_path: Path) -> None:
    _processed(tmp_path, range(1))
    _to_old_layout(tmp_path)
    fd = os.open(legacy_state_dir(tmp_path) / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # an older robovid-watch at work on this root
        result = run_daemon(tmp_path, timeout=60)
    finally:
        os.close(fd)
    assert result.returncode == 75, result.stderr[-2000:]
    assert legacy_segments_dir(tmp_path).is_dir() and not (state_dir(tmp_path) / "segments").exists()


def test_repair_and_merge_keep_out_of_a_root_an_older_robovid_holds_by_its_old_lock(tmp_path: Path) -> None:
    root = tmp_path / "robot"
    _processed(root, range(1))
    _to_old_layout(root)
    (legacy_state_dir(root) / "lock").write_text("4242")  # what an older robovid-watch writes there
    fd = os.open(legacy_state_dir(root) / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # an older robovid-watch at work on this root
        repaired = run_cli("verify", "--repair", str(root), root=root)
        with pytest.raises(MergeError, match=r"in use by another robovid process \(pid 4242"):
            merge_roots(tmp_path / "dest", [root])
    finally:
        os.close(fd)
    assert repaired.returncode == 1, repaired.stderr[-2000:]
    assert "in use by another robovid process (pid 4242" in repaired.stderr, repaired.stderr[-2000:]
    assert not (tmp_path / "dest").exists() or not read_segments(tmp_path / "dest").num_rows
    # with the older service gone, both run on the old layout
    assert run_cli("verify", "--repair", str(root), root=root).returncode == 0
    merge_roots(tmp_path / "dest", [root])
    assert len(read_segments(tmp_path / "dest")) == 2
