"""Every public path helper takes a ``str`` root as well as a Path; episode folders count only under their exact name."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import PointHooks, record, rows_by_key, start_daemon, wait_for

import robovid.layout as layout
from robovid.metadata import find_segment, read_lerobot_episodes, read_segments

_ARGUMENTS: dict[str, Any] = {
    "camera": "cam",
    "episode_index": 7,
    "chunk_index": 1,
    "file_index": 2,
    "number": 3,
    "frame_index": 4,
    "default": 30,
    "what": "Frame",
    "video_key": "cam",
}
"""A value for every non-root parameter the helpers have."""
_PATH_PARAMETERS = {"root", "episode_dir", "path"}


def _public_functions() -> list[tuple[str, Any]]:
    found = [
        (name, value)
        for name, value in vars(layout).items()
        if inspect.isfunction(value) and not name.startswith("_") and value.__module__ == layout.__name__
    ]
    found.append(("ChunkLocation.path", layout.ChunkLocation(1, 2).path))
    return found


def _populated_root(root: Path) -> Path:
    """A root where the helpers that read the disk find something: a chunk file, an info.json, an episodes file."""
    layout.chunk_path(root, "cam", 1, 2).parent.mkdir(parents=True)
    layout.chunk_path(root, "cam", 1, 2).write_bytes(b"")
    layout.info_json_path(root).parent.mkdir(parents=True)
    layout.info_json_path(root).write_text(json.dumps({"fps": 30}))
    episodes = layout.lerobot_episodes_dir(root) / "chunk-000" / "file-000.parquet"
    episodes.parent.mkdir(parents=True)
    episodes.write_bytes(b"")
    return root


def test_every_public_layout_function_takes_a_str_root_and_gives_what_a_path_root_gives(tmp_path: Path) -> None:
    root = _populated_root(tmp_path)
    checked = []
    for name, function in _public_functions():
        parameters = inspect.signature(function).parameters
        paths = [p for p in parameters if p in _PATH_PARAMETERS]
        if not paths:
            continue
        inside = layout.frame_path(layout.episode_dir(root, "cam", 7), 0)
        values = {p: _ARGUMENTS[p] for p in parameters if p not in _PATH_PARAMETERS}
        as_path = {p: (inside if p == "path" and name == "check_inside" else root) for p in paths}
        if name == "parse_chunk_path":
            as_path = {"path": layout.chunk_path(root, "cam", 1, 2)}
        as_str = {p: os.fspath(v) for p, v in as_path.items()}
        expected = function(**as_path, **values)
        assert function(**as_str, **values) == expected, f"{name} with a str gave another result than with a Path"
        checked.append(name)
    assert len(checked) >= 33, checked
    assert layout.chunk_path("/x", "cam", 1, 2) == Path("/x/videos/cam/chunk-001/file-002.mp4")


def test_the_segment_readers_take_a_str_root(tmp_path: Path) -> None:
    assert read_segments(str(tmp_path)).num_rows == 0
    assert find_segment(str(tmp_path), "cam", 0) is None
    assert read_lerobot_episodes(str(tmp_path)).num_rows == 0


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("episode-000007", 7),
        ("episode-999999", 999999),
        ("episode-1000000", 1000000),
        ("episode-12345678", 12345678),
        ("episode-0000007", None),
        ("episode-007", None),
        ("episode-01000000", None),
        ("episode-00000000", None),
        ("episode-\u0661\u0662\u0663\u0664\u0665\u0666", None),  # Arabic-Indic digits: int() reads them
        ("episode-000007 ", None),
    ],
)
def test_only_the_canonical_spelling_is_an_episode_folder(name: str, index: int | None) -> None:
    assert layout.parse_episode_dir(name) == index
    if index is not None:
        assert layout.episode_dir(Path("/r"), "cam", index).name == name


def test_the_service_leaves_a_folder_with_a_non_canonical_episode_name_alone_and_says_so_once(
    tmp_path: Path, points: PointHooks
) -> None:
    record(tmp_path, ["cam"], range(8, 9))
    record(tmp_path, ["cam"], range(7, 8))
    odd = layout.images_dir(tmp_path) / "cam" / "episode-0000007"
    layout.episode_dir(tmp_path, "cam", 7).rename(odd)
    before = sorted((p.name, p.read_bytes()) for p in odd.iterdir())
    daemon = start_daemon(tmp_path, ROBOVID_RESCAN_S="0.5", **points.env)
    try:
        wait_for(lambda: ("cam", 8) in rows_by_key(tmp_path), "episode 8 committed", daemon=daemon)
        points.wait_passes("service:rescan", 3, daemon)  # the folder was seen by several scans
    finally:
        assert daemon.stop() == 0
    assert list(rows_by_key(tmp_path)) == [("cam", 8)], "episode-0000007 was taken for episode 7"
    assert sorted((p.name, p.read_bytes()) for p in odd.iterdir()) == before
    ignored = daemon.events_named("episode_folder_ignored")
    assert len(ignored) == 1, ignored
    assert ignored[0]["folder"] == str(odd) and "episode-{N:06d}" in ignored[0]["detail"]
