"""LeRobot v3 metadata files as LeRobot 0.4.4 writes them, for tests that run without LeRobot.

The columns, types and order are those of a real recording (``LeRobotDataset.create`` with two
video features, ``add_frame``, ``save_episode``, ``finalize``; checked 2026-12-04 with
tests/lerobot_client.py). ``info.json`` is written in place the way LeRobot writes it
(``json.dump(indent=4, ensure_ascii=False)``); the episodes file through a ``ParquetWriter``
that the caller may leave open, as LeRobot does until ``finalize()``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CAMERAS = ("observation.images.front", "observation.images.wrist")
QUANTILES = ("q01", "q10", "q50", "q90", "q99")


def info(total_episodes: int, total_frames: int, fps: int = 10, size: tuple[int, int] = (64, 48)) -> dict[str, Any]:
    width, height = size
    features: dict[str, Any] = {
        camera: {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"]}
        for camera in CAMERAS
    }
    features["observation.state"] = {"dtype": "float32", "shape": [2], "names": ["x", "y"]}
    features["action"] = {"dtype": "float32", "shape": [2], "names": ["x", "y"]}
    for name, dtype in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    ):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return {
        "codebase_version": "v3.0",
        "robot_type": None,
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": 1,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{total_episodes}"} if total_episodes else {},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features,
    }


def write_info(root: Path, data: dict[str, Any]) -> None:
    path = root / "meta" / "info.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=4, ensure_ascii=False)


def episode_row(episode: int, length: int, start: int) -> dict[str, Any]:
    """One row of meta/episodes as LeRobot writes it for an episode it did not encode."""
    row: dict[str, Any] = {
        "episode_index": episode,
        "tasks": ["stack the blocks"],
        "length": length,
        "data/chunk_index": 0,
        "data/file_index": 0,
        "dataset_from_index": start,
        "dataset_to_index": start + length,
    }
    for camera in CAMERAS:
        base = f"stats/{camera}"
        for key in ("min", "max", "mean", "std", *QUANTILES):
            row[f"{base}/{key}"] = [[[0.1 * c + 0.001 * episode]] for c in range(3)]
        row[f"{base}/count"] = [min(length, 100)]
    for name in ("frame_index", "index"):
        row[f"stats/{name}/min"] = [0]
        row[f"stats/{name}/max"] = [length - 1]
        row[f"stats/{name}/mean"] = [(length - 1) / 2]
        row[f"stats/{name}/count"] = [length]
    row["meta/episodes/chunk_index"] = 0
    row["meta/episodes/file_index"] = 0
    return row


def open_episodes_writer(root: Path, rows: list[dict[str, Any]], file_index: int = 0) -> pq.ParquetWriter:
    """Write ``rows`` through a ParquetWriter and return it open (no footer yet), as during a session."""
    table = pa.Table.from_pylist(rows)
    path = root / "meta" / "episodes" / "chunk-000" / f"file-{file_index:03d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = pq.ParquetWriter(path, schema=table.schema, compression="snappy", use_dictionary=True)
    writer.write_table(table)
    return writer


def recording(root: Path, lengths: list[int], finalized: bool = True) -> pq.ParquetWriter | None:
    """info.json and one episodes file for episodes of these lengths; the writer is returned if not finalized."""
    rows, start = [], 0
    for episode, length in enumerate(lengths):
        rows.append(episode_row(episode, length, start))
        start += length
    write_info(root, info(len(lengths), start))
    writer = open_episodes_writer(root, rows)
    if finalized:
        writer.close()
        return None
    return writer


class Session:
    """A recording session that writes a root the way LeRobot 0.4.4 does with its encoding switched off.

    PNGs for each video feature, no completion marker; ``save`` buffers the episode's row and
    rewrites info.json in place (total_episodes, total_frames); the episodes file is written
    through a ParquetWriter that has a footer only after ``finalize``.
    """

    def __init__(self, root: Path, fps: int = 10, size: tuple[int, int] = (64, 48)) -> None:
        self.root, self.fps, self.size = root, fps, size
        self.lengths: list[int] = []
        self._buffer: list[dict[str, Any]] = []
        self._writer: pq.ParquetWriter | None = None
        write_info(root, info(0, 0, fps, size))

    def record(self, episode: int, num_frames: int) -> None:
        from robovid.synthetic import write_episode

        for number, camera in enumerate(CAMERAS):
            folder = self.root / "images" / camera / f"episode-{episode:06d}"
            write_episode(folder, episode, num_frames, *self.size, seed=number, marker=None)

    def save(self, length: int) -> None:
        self._buffer.append(episode_row(len(self.lengths), length, sum(self.lengths)))
        self.lengths.append(length)
        write_info(self.root, info(len(self.lengths), sum(self.lengths), self.fps, self.size))

    def flush(self) -> None:
        if not self._buffer:
            return
        table = pa.Table.from_pylist(self._buffer)
        if self._writer is None:
            path = self.root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(path, schema=table.schema, compression="snappy", use_dictionary=True)
        self._writer.write_table(table)
        self._buffer.clear()

    def finalize(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
