"""Replacing a file another program writes never loses that program's write."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from robovid.guarded_replace import FileStamp, replace_if_unchanged


def _stamp(path: Path) -> FileStamp:
    stamp = FileStamp.read(path)
    assert stamp is not None
    return stamp


def test_an_unchanged_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "info.json"
    path.write_text("lerobot")
    assert replace_if_unchanged(path, _stamp(path), lambda temp: temp.write_text("robovid"), settle_s=0.01)
    assert path.read_text() == "robovid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["info.json"]


def test_a_file_rewritten_after_it_was_read_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "info.json"
    path.write_text("lerobot v1")
    stamp = _stamp(path)
    path.write_text("lerobot v2, longer")  # LeRobot's next save_episode
    assert not replace_if_unchanged(path, stamp, lambda temp: temp.write_text("robovid"), settle_s=0.01)
    assert path.read_text() == "lerobot v2, longer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["info.json"]


def test_a_missing_file_is_not_created(tmp_path: Path) -> None:
    stamp = FileStamp(1, 1, 1)
    assert not replace_if_unchanged(tmp_path / "gone.json", stamp, lambda temp: temp.write_text("x"), settle_s=0.01)
    assert not (tmp_path / "gone.json").exists()


def test_a_write_into_the_replaced_inode_is_put_back(tmp_path: Path) -> None:
    """A writer that opened the file just before the rename writes into the old inode: its content wins."""
    path = tmp_path / "info.json"
    path.write_text("lerobot v1")
    stamp = _stamp(path)
    writer_fd = os.open(path, os.O_WRONLY)  # opened before robovid's rename, written after it
    wrote = threading.Event()

    def late_writer() -> None:
        deadline = time.monotonic() + 10
        while _stamp(path).inode == stamp.inode and time.monotonic() < deadline:
            time.sleep(0.001)
        os.ftruncate(writer_fd, 0)
        os.pwrite(writer_fd, b"lerobot v2 (total_episodes 7)", 0)
        os.close(writer_fd)
        wrote.set()

    thread = threading.Thread(target=late_writer)
    thread.start()

    def settle(_seconds: float) -> None:  # hold robovid's settle time until the late write happened
        assert wrote.wait(30)

    replaced = replace_if_unchanged(path, stamp, lambda temp: temp.write_text("robovid"), settle_s=0.01, wait=settle)
    thread.join()
    assert wrote.is_set()
    assert not replaced
    assert path.read_text() == "lerobot v2 (total_episodes 7)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["info.json"]
