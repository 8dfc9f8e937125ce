"""Robots' roots for the merge tests, and the checks a merged root must pass (tests/test_merge*.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
from daemon_harness import daemon_env, decoded_indices

from robovid.decode import decode_video_frames
from robovid.layout import chunk_path, merge_dir
from robovid.metadata import read_segments
from robovid.synthetic import read_index, write_recording

CAMERAS = ("front", "wrist")
FRAMES = 8
ROBOT_A = range(3)
ROBOT_B = range(100, 102)
EXPECTED = {0: 0, 1: 1, 2: 2, 3: 100, 4: 101}
"""DEST episode -> the source episode it holds (A's first, then B's, each in index order)."""


def make_robot(root: Path, episodes: range, vcodec: str, file_size_mb: str = "0.006") -> Path:
    write_recording(root, CAMERAS, episodes, FRAMES, 64, 48)
    env = daemon_env(root, ROBOVID_VIDEO_FILE_SIZE_MB=file_size_mb, ROBOVID_VCODEC=vcodec)
    command = [sys.executable, "-m", "robovid_watch.cli", "process", str(root), "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def merge_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "robovid_watch.cli", "merge", *args, "--no-progress"]
    return subprocess.run(command, env=daemon_env(Path(args[0]), **env), capture_output=True, text=True, timeout=600)


def check_merged(dest: Path, expected: dict[int, int], final: bool = True) -> None:
    """Each DEST row holds exactly its source episode's frames, at its recorded timestamps on both backends;
    no DEST frame belongs to two rows; with ``final``, every DEST frame is some row's and no intent is left."""
    rows = read_segments(dest, all_takes=True).to_pylist()
    keys = [(r["video_key"], r["episode_index"], r["take"]) for r in rows]
    assert len(keys) == len(set(keys)), "an episode was committed twice"
    if final:
        assert sorted(keys) == sorted((c, e, 0) for c in CAMERAS for e in expected)
    decoded: dict[Path, list[tuple[int, int]]] = {}
    claimed: dict[Path, set[int]] = defaultdict(set)
    for row in rows:
        path = chunk_path(dest, row["video_key"], row["chunk_index"], row["file_index"])
        decoded.setdefault(path, decoded_indices(path))
        start, count, source = row["first_frame"], row["num_frames"], expected[row["episode_index"]]
        assert decoded[path][start : start + count] == [(source, i) for i in range(FRAMES)], row
        span = set(range(start, start + count))
        assert not claimed[path] & span, f"{row}: overlaps another row (appended twice?)"
        claimed[path] |= span
        stamps = [row["from_timestamp"], row["to_timestamp"] - 1 / row["fps"]]
        for backend in ("pyav", "torchcodec"):
            frames = decode_video_frames(path, stamps, tolerance_s=1e-4, backend=backend)
            images = (frames.numpy() * 255).round().astype("uint8").transpose(0, 2, 3, 1)
            assert [read_index(image) for image in images] == [(source, 0), (source, FRAMES - 1)], (backend, row)
    if final:
        for path in dest.glob("videos/*/chunk-*/file-*.mp4"):
            decoded.setdefault(path, decoded_indices(path))
            assert claimed[path] == set(range(len(decoded[path]))), f"{path}: frames no row accounts for"
        assert not list(merge_dir(dest).glob("intent-*.json")), "an intent was left behind"


def check_lerobot(dest: Path, expected: dict[int, int], task: str) -> None:
    info = json.loads((dest / "meta" / "info.json").read_text())
    assert info["total_episodes"] == len(expected)
    assert info["total_frames"] == len(expected) * FRAMES
    episodes = pq.read_table(next(dest.glob("meta/episodes/*/*.parquet"))).to_pylist()
    assert [e["episode_index"] for e in episodes] == sorted(expected)
    segments = {(r["video_key"], r["episode_index"]): r for r in read_segments(dest).to_pylist()}
    for episode in episodes:
        assert episode["tasks"] == [task] and episode["length"] == FRAMES
        for camera in CAMERAS:
            row = segments[(camera, episode["episode_index"])]
            for name in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
                assert episode[f"videos/{camera}/{name}"] == row[name]
    data = pq.read_table(next(dest.glob("data/*/*.parquet")))
    assert data["episode_index"].to_pylist() == [e for e in sorted(expected) for _ in range(FRAMES)]
    assert pq.read_table(dest / "meta" / "tasks.parquet").to_pylist()[0]["__index_level_0__"] == task


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }
