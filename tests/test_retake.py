"""A re-take recorded into a committed episode's folder: refused, unless asked for; then both takes are kept.

The new take's frames carry another burnt-in episode number (100), so every decoded frame says
which take it belongs to.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import Episode, daemon_env, decoded_indices, png_digest, run_daemon, start_daemon, wait_for

from robovid.layout import chunk_path, episode_dir
from robovid.metadata import read_segments
from robovid.synthetic import write_episode
from robovid.verify import verify_root

CAMERA = "cam"
NEW_TAKE = 100
"""The episode number burnt into the re-take's frames."""


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "robovid_watch.cli", *args]
    return subprocess.run(command, env=daemon_env(root), capture_output=True, text=True, timeout=300)


def _committed_then_retaken(root: Path) -> Path:
    """Episode 0 committed (take 0), then a 6-frame re-take written into its folder (marker last)."""
    folder = episode_dir(root, CAMERA, 0)
    write_episode(folder, 0, 8, 64, 48, seed=1)
    assert _cli(root, "process", str(root), "--no-progress").returncode == 0
    assert not folder.exists()
    write_episode(folder, NEW_TAKE, 6, 64, 48, seed=2)
    return folder


def _frames_of(root: Path, row: dict[str, object]) -> list[tuple[int, int]]:
    path = chunk_path(root, CAMERA, int(row["chunk_index"]), int(row["file_index"]))  # type: ignore[call-overload]
    first, count = int(row["first_frame"]), int(row["num_frames"])  # type: ignore[call-overload]
    return decoded_indices(path)[first : first + count]


def _takes(root: Path) -> dict[int, dict[str, object]]:
    return {int(r["take"]): r for r in read_segments(root, all_takes=True).to_pylist()}


def test_a_retake_is_refused_until_asked_for_then_committed_as_the_next_take_keeping_the_first(
    tmp_path: Path,
) -> None:
    folder = _committed_then_retaken(tmp_path)
    retake_pngs = png_digest(tmp_path, Episode(CAMERA, 0, 6))
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: bool(daemon.events_named("episode_failed")), "the re-take refused", daemon=daemon)
        refused = daemon.events_named("episode_failed")[0]
        assert refused["error_type"] == "DuplicateEpisodeError" and "robovid retake" in refused["reason"]
        assert png_digest(tmp_path, Episode(CAMERA, 0, 6)) == retake_pngs
        asked = _cli(tmp_path, "retake", str(tmp_path), "0", "--camera", CAMERA)
        assert asked.returncode == 0, asked.stdout + asked.stderr
        wait_for(lambda: bool(daemon.events_named("episode_retake_committed")), "the re-take committed", daemon=daemon)
        wait_for(lambda: not folder.exists(), "the re-take's PNGs freed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert daemon.events_named("episode_retake_started")[0]["replaces_take"] == 0
    takes = _takes(tmp_path)
    assert sorted(takes) == [0, 1]
    assert _frames_of(tmp_path, takes[0]) == [(0, i) for i in range(8)]  # the first take, still there
    assert _frames_of(tmp_path, takes[1]) == [(NEW_TAKE, i) for i in range(6)]
    (current,) = read_segments(tmp_path).to_pylist()
    assert current["take"] == 1 and current["num_frames"] == 6
    assert verify_root(tmp_path) == ([], 2)


def test_robovid_retake_refuses_an_episode_that_is_not_committed_or_has_no_new_take(tmp_path: Path) -> None:
    write_episode(episode_dir(tmp_path, CAMERA, 0), 0, 8, 64, 48, seed=1)
    assert _cli(tmp_path, "retake", str(tmp_path), "0", "--camera", CAMERA).returncode == 1
    assert _cli(tmp_path, "process", str(tmp_path), "--no-progress").returncode == 0
    result = _cli(tmp_path, "retake", str(tmp_path), "0")
    assert result.returncode == 1 and "no committed camera" in result.stdout


RETAKE_POINTS = [
    "stage:after-intent:1",
    "append:before-flip:1",
    "stage:after-append:1",
    "commit:before-rename:1",
    "stage:after-commit:1",
    "clean:unlink:2",
    "clean:before-clear-intent:1",
]


@pytest.mark.parametrize("point", RETAKE_POINTS)
def test_a_retake_killed_at_any_step_keeps_both_takes_and_the_restart_commits_it(tmp_path: Path, point: str) -> None:
    _committed_then_retaken(tmp_path)
    retake_pngs = png_digest(tmp_path, Episode(CAMERA, 0, 6))
    assert _cli(tmp_path, "retake", str(tmp_path), "0").returncode == 0
    killed = run_daemon(tmp_path, timeout=120, ROBOVID_FAULT_POINT=point, ROBOVID_WORKERS="1")
    assert killed.returncode == -signal.SIGKILL, f"{point} never reached: {killed.stderr[-2000:]}"
    takes = _takes(tmp_path)
    assert _frames_of(tmp_path, takes[0]) == [(0, i) for i in range(8)]
    if 1 not in takes:
        assert png_digest(tmp_path, Episode(CAMERA, 0, 6)) == retake_pngs, "the re-take lost before its commit"
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: 1 in _takes(tmp_path), "the re-take committed", daemon=daemon)
        wait_for(lambda: not episode_dir(tmp_path, CAMERA, 0).exists(), "its PNGs freed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    takes = _takes(tmp_path)
    assert sorted(takes) == [0, 1]
    assert _frames_of(tmp_path, takes[1]) == [(NEW_TAKE, i) for i in range(6)]
    assert verify_root(tmp_path) == ([], 2)
