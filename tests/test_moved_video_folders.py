"""``videos/``, a camera's folder or a chunk folder moved to a bigger disk with a symlink left behind keeps working.

The service appends through the link and commits rows for the file it appended to (the file's
location is read from its path, not looked up among the real folders). Before, every episode
failed at commit (``FileNotFoundError ... is not a chunk file``) after its frames were appended.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import rows_by_key, run_cli, start_daemon, wait_for
from frame_oracle import Ledger, check_frames

from robovid.layout import chunk_path, episode_dir


def _link_videos(root: Path, disk: Path) -> None:
    shutil.move(root / "videos", disk / "videos")
    (root / "videos").symlink_to(disk / "videos", target_is_directory=True)


def _link_camera(root: Path, disk: Path) -> None:
    shutil.move(root / "videos" / "cam", disk / "cam")
    (root / "videos" / "cam").symlink_to(disk / "cam", target_is_directory=True)


def _link_chunk_folder(root: Path, disk: Path) -> None:
    folder = chunk_path(root, "cam", 0, 0).parent
    shutil.move(folder, disk / folder.name)
    folder.symlink_to(disk / folder.name, target_is_directory=True)


MOVES: dict[str, Callable[[Path, Path], None]] = {
    "videos": _link_videos,
    "camera_folder": _link_camera,
    "chunk_folder": _link_chunk_folder,
}


@pytest.mark.parametrize("moved", sorted(MOVES))
def test_video_folders_moved_to_another_disk_behind_a_symlink_keep_working(tmp_path: Path, moved: str) -> None:
    root, disk = tmp_path / "root", tmp_path / "bigger-disk"
    root.mkdir()
    disk.mkdir()
    ledger = Ledger(root)
    ledger.write_episode("cam", 0)
    daemon = start_daemon(root)
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(root), "episode 0 committed", daemon=daemon)
        wait_for(lambda: not episode_dir(root, "cam", 0).exists(), "episode 0 cleaned", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    MOVES[moved](root, disk)
    for episode in (1, 2):
        ledger.write_episode("cam", episode)
    daemon = start_daemon(root)
    try:
        wait_for(lambda: len(rows_by_key(root)) == 3, "episodes 1 and 2 committed", timeout=60, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert not daemon.events_named("episode_failed"), daemon.events_named("episode_failed")[0].get("reason")
    assert {(r[0]["chunk_index"], r[0]["file_index"]) for r in rows_by_key(root).values()} == {(0, 0)}
    assert run_cli("verify", str(root), root=root).returncode == 0
    check_frames(root, ledger, final=True)
