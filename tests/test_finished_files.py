"""Finished (sealed) chunk files, with the real service: when it seals, and that it never writes a sealed file again.

A sealed file is what robovid-ship may ship and delete; these tests hold the service to its
side of that bargain (robovid_watch.finished explains the rule).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from daemon_harness import (
    check_invariants,
    chunk_files,
    finish_and_check,
    png_digest,
    record,
    rows_by_key,
    run_daemon,
    start_daemon,
    wait_for,
)

from robovid.compact import chunk_space
from robovid.layout import list_chunks, sealed_dir
from robovid_watch.finished import seal, sealed_files

# about two 8-frame 64x48 episodes per file as libsvtav1 encodes them (h264, the default, writes smaller ones)
SMALL_FILES = {"ROBOVID_VCODEC": "libsvtav1", "ROBOVID_VIDEO_FILE_SIZE_MB": "0.01"}


def _digests(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _sealed_paths(root: Path) -> list[Path]:
    return [s.path(root) for s in sealed_files(root)]


def test_rollover_compacts_then_seals_the_finished_file_and_never_touches_it_again(tmp_path: Path) -> None:
    episodes = record(tmp_path, ["front"], range(6))
    daemon = start_daemon(tmp_path, **SMALL_FILES)
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 6, "6 committed", daemon=daemon)
        wait_for(lambda: all(png_digest(tmp_path, e) is None for e in episodes), "cleaned", daemon=daemon)
        files = list(chunk_files(tmp_path))
        assert len(files) >= 3
        assert _sealed_paths(tmp_path) == files[:-1], "every file but the last is sealed, in order"
        for sealed in sealed_files(tmp_path):
            assert sealed.size_bytes == sealed.path(tmp_path).stat().st_size
            assert sealed.reason == "rollover"
            assert chunk_space(sealed.path(tmp_path)).dead_share <= 0.10, "compacted before the seal"
        before = _digests(_sealed_paths(tmp_path))
        more = record(tmp_path, ["front"], range(6, 12))
        wait_for(lambda: len(rows_by_key(tmp_path)) == 12, "12 committed", daemon=daemon)
        wait_for(lambda: all(png_digest(tmp_path, e) is None for e in more), "cleaned", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert _digests(list(before)) == before, "a sealed file changed"
    sealed_events = [e["chunk"] for e in daemon.events_named("chunk_sealed")]
    assert sealed_events == [str(p) for p in _sealed_paths(tmp_path)]


def test_a_sealed_last_file_is_not_appended_to_and_a_pruned_name_is_not_reused(tmp_path: Path) -> None:
    record(tmp_path, ["front"], range(2))
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 2, "2 committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    (only,) = list_chunks(tmp_path, "front")
    seal(tmp_path, "front", only, "idle")  # as the service's idle rule would
    shipped = only.path(tmp_path, "front")
    shipped.unlink()  # as robovid-ship does once the remote copy is committed
    record(tmp_path, ["front"], range(2, 3))
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 3, "3 committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert not shipped.exists(), "the pruned file's name was used again"
    row = rows_by_key(tmp_path)[("front", 2)][0]
    assert (row["chunk_index"], row["file_index"]) > (only.chunk_index, only.file_index)


def test_start_seals_every_file_but_each_cameras_last(tmp_path: Path) -> None:
    record(tmp_path, ["front", "wrist"], range(6))
    daemon = start_daemon(tmp_path, **SMALL_FILES)
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 12, "12 committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    expected = _sealed_paths(tmp_path)
    shutil.rmtree(sealed_dir(tmp_path))  # a root from before sealing
    daemon = start_daemon(tmp_path, **SMALL_FILES)
    try:
        wait_for(lambda: len(sealed_files(tmp_path)) == len(expected), "sealed at start", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert sorted(_sealed_paths(tmp_path)) == sorted(expected)
    assert {s.reason for s in sealed_files(tmp_path)} == {"start"}


def test_a_file_idle_for_seal_idle_s_is_sealed_and_the_next_episode_starts_a_new_one(tmp_path: Path) -> None:
    record(tmp_path, ["front"], range(1))
    daemon = start_daemon(tmp_path, ROBOVID_SEAL_IDLE_S="1")
    try:
        wait_for(lambda: len(sealed_files(tmp_path)) == 1, "the idle file sealed", daemon=daemon)
        (first,) = sealed_files(tmp_path)
        assert first.reason == "idle"
        record(tmp_path, ["front"], range(1, 2))
        wait_for(lambda: len(rows_by_key(tmp_path)) == 2, "2 committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    rows = rows_by_key(tmp_path)
    assert rows[("front", 1)][0]["file_index"] == rows[("front", 0)][0]["file_index"] + 1


def _check_sealed_unchanged(root: Path, seen: dict[Path, str]) -> None:
    """Every sealed file still has the size its seal recorded, and the bytes it had when first seen sealed."""
    for sealed in sealed_files(root):
        path = sealed.path(root)
        assert path.stat().st_size == sealed.size_bytes, f"{path} changed size after its seal"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert seen.setdefault(path, digest) == digest, f"{path} changed after its seal"


def test_a_kill_while_sealing_then_restart_loses_nothing_and_seals_what_was_finished(tmp_path: Path) -> None:
    episodes = record(tmp_path, ["a", "b"], range(4))
    originals = {e: png_digest(tmp_path, e) or "" for e in episodes}
    result = run_daemon(tmp_path, timeout=120, ROBOVID_FAULT_POINT="seal:before-record:1", **SMALL_FILES)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    check_invariants(tmp_path, episodes, originals, final=False)
    seen: dict[Path, str] = {}
    _check_sealed_unchanged(tmp_path, seen)
    finish_and_check(tmp_path, episodes, originals, **SMALL_FILES)
    _check_sealed_unchanged(tmp_path, seen)
    for camera in ("a", "b"):
        chunks = list_chunks(tmp_path, camera)
        assert [s.location for s in sealed_files(tmp_path) if s.camera == camera] == chunks[:-1]


@pytest.mark.parametrize("kills", [pytest.param(6, id="ci"), pytest.param(40, id="stress", marks=pytest.mark.slow)])
def test_random_kills_never_change_a_sealed_file(tmp_path: Path, kills: int) -> None:
    episodes = record(tmp_path, ["a", "b"], range(5))
    originals = {e: png_digest(tmp_path, e) or "" for e in episodes}
    rng = random.Random(int(os.environ.get("ROBOVID_CRASH_SEED", "77")))
    seen: dict[Path, str] = {}
    for _ in range(kills):
        daemon = start_daemon(tmp_path, ROBOVID_WORKERS=str(rng.choice([1, 2])), **SMALL_FILES)
        try:
            wait_for(lambda d=daemon: bool(d.events_named("started")), "started", daemon=daemon)
            time.sleep(rng.uniform(0.0, 0.8))
        finally:
            daemon.kill()
        check_invariants(tmp_path, episodes, originals, final=False)
        _check_sealed_unchanged(tmp_path, seen)
    finish_and_check(tmp_path, episodes, originals, **SMALL_FILES)
    _check_sealed_unchanged(tmp_path, seen)
