"""Make a root written by another recorder a LeRobot v3 dataset, from robovid's committed segments.

Writes what LeRobot 0.4.4's ``LeRobotDataset(repo_id, root=ROOT)`` reads:

- ``data/chunk-*/file-*.parquet``: one row per frame, ``timestamp`` (float32, frame_index / fps),
  ``frame_index``, ``episode_index``, ``index`` (dataset-wide) and ``task_index``;
- ``meta/episodes/chunk-*/file-*.parquet``: one row per episode, in order 0..N-1, with LeRobot's
  columns (``tasks``, ``length``, ``dataset_from_index``/``to_index``, data and video locations,
  ``stats/{feature}/{stat}``);
- ``meta/tasks.parquet`` (pandas-readable, the task text as index), ``meta/stats.json``;
- ``meta/info.json`` **last**: its ``total_episodes`` is the commit point. Until it is rewritten,
  LeRobot loads the previous, smaller dataset (its files only ever grow by whole episodes).

Only the longest run of episodes 0..N-1 in which every camera is committed is exported; the
layout of every file is a function of the episodes alone, so an interrupted export is finished
by running it again. The data files carry only index columns: a recorder that has state and
action columns adds them itself (README, "Using robovid with LeRobot").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robovid._faults import fault_point
from robovid.durable import atomic_output, write_bytes_durably
from robovid.guarded_replace import FileStamp
from robovid.layout import (
    LEROBOT_DATA_PATH,
    LEROBOT_EPISODES_PATH,
    LEROBOT_VIDEO_PATH,
    chunk_path,
    info_json_path,
    stats_json_path,
    tasks_path,
)
from robovid.lerobot_meta import VIDEO_COLUMNS, encode_info, read_complete, video_info
from robovid.lerobot_stats import (
    FeatureStats,
    FrameStatsAccumulator,
    aggregate_stats,
    feature_stats_from_json,
    flat_columns,
    sample_indices,
    stats_to_json,
    vector_stats,
)
from robovid.lerobot_tasks import tasks_parquet

CODEBASE_VERSION = "v3.0"
DATA_PATH = LEROBOT_DATA_PATH
VIDEO_PATH = LEROBOT_VIDEO_PATH
EPISODES_PATH = LEROBOT_EPISODES_PATH
DATA_FILE_ROWS = 1_000_000
"""A new data file starts once the current one holds this many frames (~6 MB of index columns)."""
EPISODES_FILE_ROWS = 1000
"""A new episodes file starts once the current one holds this many episodes (~3 MB with statistics)."""
DATA_FILES_SIZE_IN_MB = 100
INDEX_FEATURES = {
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}


@dataclass(frozen=True)
class ExportEpisode:
    """One episode to export: its length and, per camera, the committed segment row and statistics."""

    index: int
    length: int
    segments: Mapping[str, Mapping[str, Any]]
    video_stats: Mapping[str, FeatureStats]
    task_index: int = 0
    """Its task in :func:`export_dataset`'s ``task`` list (one task: 0)."""


@dataclass
class ExportReport:
    """What an export wrote and why it stopped where it did."""

    episodes: int = 0
    frames: int = 0
    written: list[Path] = field(default_factory=list)
    stopped: str = ""
    """Why episode ``episodes`` was not exported ("" when every committed episode was)."""


class ExportCache:
    """What an export computed that the next one can reuse: a service exports after every commit.

    Per-episode statistics, the statistics of rows committed without them (decoded from the
    video), and the dataset statistics folded over the episodes so far (the next export only
    folds in the new episodes).
    """

    def __init__(self) -> None:
        self._episode: dict[tuple[object, ...], dict[str, FeatureStats]] = {}
        self._video: dict[tuple[object, ...], FeatureStats] = {}
        self._fold_keys: list[tuple[object, ...]] = []
        self._fold: dict[str, FeatureStats] = {}

    def video_stats(self, root: Path, row: Mapping[str, Any]) -> FeatureStats:
        stored = row.get("lerobot_stats")
        if stored:
            return feature_stats_from_json(stored)
        key = tuple(row[k] for k in ("video_key", "episode_index", "chunk_index", "file_index", "from_timestamp"))
        if key not in self._video:
            path = chunk_path(root, row["video_key"], row["chunk_index"], row["file_index"])
            self._video[key] = stats_from_video(path, row)
        return self._video[key]

    def episode_stats(
        self, episode: ExportEpisode, from_index: int, fps: int, keys: list[str]
    ) -> tuple[tuple[object, ...], dict[str, FeatureStats]]:
        """The episode's statistics per feature, and the key they are cached under."""
        places = tuple(
            (k, *(episode.segments[k][n] for n in ("chunk_index", "file_index", "from_timestamp"))) for k in keys
        )
        key = (episode.index, episode.length, from_index, fps, places, episode.task_index)
        if key not in self._episode:
            self._episode[key] = _episode_stats(episode, from_index, fps, keys)
        return key, self._episode[key]

    def dataset_stats(self, placed: Sequence[_Placed]) -> dict[str, FeatureStats]:
        """Every episode's statistics folded in order (LeRobot's running aggregate), reusing the last fold."""
        keys = [p.stats_key for p in placed]
        done = len(self._fold_keys)
        if keys[:done] != self._fold_keys or not self._fold_keys:
            self._fold_keys, self._fold, done = [], {}, 0
        self._fold = aggregate_stats(
            [self._fold, *(p.stats for p in placed[done:])] if done else [p.stats for p in placed]
        )
        self._fold_keys = keys
        return self._fold


@dataclass(frozen=True)
class _Placed:
    episode: ExportEpisode
    from_index: int
    data_file: tuple[int, int]
    episodes_file: tuple[int, int]
    stats: dict[str, FeatureStats]
    stats_key: tuple[object, ...]


def exportable(
    root: Path,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str] | None = None,
    cache: ExportCache | None = None,
) -> tuple[list[ExportEpisode], str]:
    """The episodes 0..N-1 that can be exported from segment rows, and why the next one cannot ("" if none is left).

    Every episode needs a committed segment for each camera (``keys``: those of episode 0 unless
    given), one frame count, the fps and frame size of episode 0. Statistics come from the row's
    ``lerobot_stats`` (computed from the PNGs during the encode); rows committed without them get
    statistics from their decoded video.
    """
    by_episode: dict[int, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        by_episode.setdefault(int(row["episode_index"]), {})[row["video_key"]] = row
    cameras = list(keys) if keys is not None else sorted(by_episode.get(0, {}))
    cache = cache or ExportCache()
    episodes: list[ExportEpisode] = []
    for index in range(len(by_episode) + 1):
        reason = _not_exportable(index, by_episode, cameras)
        if reason is not None:
            later = [e for e in by_episode if e > index]
            return episodes, reason if later or index in by_episode else ""
        segments = {key: by_episode[index][key] for key in cameras}
        stats = {key: cache.video_stats(root, segments[key]) for key in cameras}
        length = int(segments[cameras[0]]["num_frames"])
        episodes.append(ExportEpisode(index, length, segments, stats))
    return episodes, ""


def _not_exportable(
    index: int, by_episode: Mapping[int, Mapping[str, Mapping[str, Any]]], cameras: list[str]
) -> str | None:
    """Why episode ``index`` cannot follow the ones before it, or None when it can."""
    segments = by_episode.get(index, {})
    missing = [key for key in cameras if key not in segments]
    if not cameras or missing:
        return f"episode {index}: camera(s) {missing or 'any'} not committed yet"
    first = by_episode[0]
    counts = {int(segments[key]["num_frames"]) for key in cameras}
    if len(counts) > 1:
        return f"episode {index}: its cameras hold different frame counts {sorted(counts)}; a LeRobot episode has one length"
    for key in cameras:
        for name in ("fps", "video.height", "video.width"):
            if segments[key][name] != first[key][name]:
                return (
                    f"episode {index}, camera {key!r}: {name} is {segments[key][name]}, episode 0 has "
                    f"{first[key][name]}; one LeRobot dataset keeps one {name}"
                )
    return None


def stats_from_video(path: Path, row: Mapping[str, Any], batch: int = 8) -> FeatureStats:
    """Statistics of a committed segment from its decoded frames (for segments committed without them).

    Decoded frames differ slightly from the PNGs they were encoded from, so these are close to,
    not equal to, what the encode would have computed (a depth camera's exact depth: equal).
    """
    from robovid._decode_pyav import decode_video_frames_pyav

    depth = bool(row.get("video.is_depth_map"))
    accumulator = FrameStatsAccumulator(int(row["num_frames"]), depth=depth)
    wanted = sample_indices(int(row["num_frames"]))
    fps = float(row["fps"])
    for start in range(0, len(wanted), batch):
        chunk = wanted[start : start + batch]
        timestamps = [row["from_timestamp"] + i / fps for i in chunk]
        frames = decode_video_frames_pyav(path, timestamps, 1e-4, is_depth=depth)
        pixels = np.asarray(frames.numpy() if hasattr(frames, "numpy") else frames)
        if depth:  # [N, 1, H, W] samples as stored
            images = pixels[:, 0]
        else:
            images = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        for index, image in zip(chunk, images, strict=True):
            accumulator.add(index, image)
    return accumulator.stats()


def export_dataset(
    root: Path,
    episodes: Sequence[ExportEpisode],
    fps: int,
    task: str | Sequence[str] = "",
    chunks_size: int = 1000,
    video_files_size_in_mb: float = 200,
    cache: ExportCache | None = None,
) -> ExportReport:
    """Write (or bring up to date) the LeRobot files for ``episodes`` (0..N-1, as from :func:`exportable`).

    ``task`` is every episode's task, or the task table when the episodes' ``task_index`` differ.
    """
    tasks = [task] if isinstance(task, str) else list(task)
    report = ExportReport(episodes=len(episodes), frames=sum(e.length for e in episodes))
    if not episodes:
        return report
    keys = list(episodes[0].segments)
    cache = cache or ExportCache()
    placed = _place(episodes, chunks_size, fps, keys, cache)
    for location, members in _group(placed, "data_file").items():
        _write_if_different(root, DATA_PATH, location, members, lambda m: _data_table(m, fps), report)
    fault_point("lerobot-export:after-data")
    for location, members in _group(placed, "episodes_file").items():
        _write_if_different(root, EPISODES_PATH, location, members, lambda m: _episodes_table(m, keys, tasks), report)
    fault_point("lerobot-export:after-episodes")
    _write_bytes_if_different(tasks_path(root), tasks_parquet(tasks), report)
    stats_json = json.dumps(stats_to_json(cache.dataset_stats(placed)), indent=4).encode()
    _write_bytes_if_different(stats_json_path(root), stats_json, report)
    fault_point("lerobot-export:before-info")
    info = _info(episodes, keys, fps, chunks_size, video_files_size_in_mb) | {"total_tasks": len(tasks)}
    _write_bytes_if_different(info_json_path(root), encode_info(info), report)
    return report


def _place(
    episodes: Sequence[ExportEpisode], chunks_size: int, fps: int, keys: list[str], cache: ExportCache
) -> list[_Placed]:
    """Assign each episode its data file and episodes file: a function of the episodes before it only."""
    placed, start = [], 0
    data_file, data_rows = (0, 0), 0
    meta_file, meta_rows = (0, 0), 0
    for episode in episodes:
        if data_rows >= DATA_FILE_ROWS:
            data_file, data_rows = _next(data_file, chunks_size), 0
        if meta_rows >= EPISODES_FILE_ROWS:
            meta_file, meta_rows = _next(meta_file, chunks_size), 0
        stats_key, stats = cache.episode_stats(episode, start, fps, keys)
        placed.append(_Placed(episode, start, data_file, meta_file, stats, stats_key))
        start += episode.length
        data_rows += episode.length
        meta_rows += 1
    return placed


def _next(location: tuple[int, int], chunks_size: int) -> tuple[int, int]:
    chunk, file = location
    return (chunk + 1, 0) if file + 1 >= chunks_size else (chunk, file + 1)


def _group(placed: Sequence[_Placed], attribute: str) -> dict[tuple[int, int], list[_Placed]]:
    groups: dict[tuple[int, int], list[_Placed]] = {}
    for item in placed:
        groups.setdefault(getattr(item, attribute), []).append(item)
    return groups


def _write_if_different(
    root: Path, pattern: str, location: tuple[int, int], members: list[_Placed], build: Any, report: ExportReport
) -> None:
    """Rewrite one Parquet file unless it already holds exactly these episodes with these columns."""
    path = root / pattern.format(chunk_index=location[0], file_index=location[1])
    table: pa.Table = build(members)
    existing = read_complete(path) if path.exists() else None
    if existing is not None and existing[0].equals(table):
        return
    with atomic_output(path) as temp:
        pq.write_table(table, temp, compression="snappy", use_dictionary=True)
    report.written.append(path)


def _write_bytes_if_different(path: Path, data: bytes, report: ExportReport) -> None:
    if FileStamp.read(path) is not None and path.read_bytes() == data:
        return
    write_bytes_durably(path, data)
    report.written.append(path)


def _index_columns(episode: ExportEpisode, from_index: int) -> dict[str, np.ndarray]:
    length = episode.length
    return {
        "frame_index": np.arange(length, dtype=np.int64),
        "episode_index": np.full(length, episode.index, dtype=np.int64),
        "index": np.arange(from_index, from_index + length, dtype=np.int64),
        "task_index": np.full(length, episode.task_index, dtype=np.int64),
    }


def _data_table(members: list[_Placed], fps: int) -> pa.Table:
    parts = []
    for item in members:
        columns = _index_columns(item.episode, item.from_index)
        timestamp = (columns["frame_index"] / fps).astype(np.float32)
        parts.append(pa.table({"timestamp": timestamp, **columns}))
    table = pa.concat_tables(parts)
    features = {name: {"dtype": dtype, "_type": "Value"} for name, dtype in INDEX_FEATURES.items()}
    return table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})


def _episodes_table(members: list[_Placed], keys: list[str], tasks: list[str]) -> pa.Table:
    rows = []
    for item in members:
        episode = item.episode
        row: dict[str, Any] = {
            "episode_index": episode.index,
            "tasks": [tasks[episode.task_index]],
            "length": episode.length,
            "data/chunk_index": item.data_file[0],
            "data/file_index": item.data_file[1],
            "dataset_from_index": item.from_index,
            "dataset_to_index": item.from_index + episode.length,
        }
        for key in keys:
            segment = episode.segments[key]
            for name in VIDEO_COLUMNS:
                row[f"videos/{key}/{name}"] = segment[name]
        row |= flat_columns(item.stats, [*keys, *INDEX_FEATURES])
        row["meta/episodes/chunk_index"] = item.episodes_file[0]
        row["meta/episodes/file_index"] = item.episodes_file[1]
        rows.append(row)
    return pa.Table.from_pylist(rows)


def _episode_stats(episode: ExportEpisode, from_index: int, fps: int, keys: list[str]) -> dict[str, FeatureStats]:
    """The episode's statistics per feature, as LeRobot computes them while recording (timestamps in float64)."""
    columns = _index_columns(episode, from_index)
    stats: dict[str, FeatureStats] = {key: episode.video_stats[key] for key in keys}
    stats["timestamp"] = vector_stats(np.array([i / fps for i in range(episode.length)]))
    for name in ("frame_index", "episode_index", "index", "task_index"):
        stats[name] = vector_stats(columns[name])
    return stats


def _info(
    episodes: Sequence[ExportEpisode], keys: list[str], fps: int, chunks_size: int, video_mb: float
) -> dict[str, Any]:
    first = episodes[0].segments
    features: dict[str, Any] = {}
    for key in keys:
        row = first[key]
        info = video_info(row)  # a depth camera's also marks it as depth (is_depth_map, depth_unit)
        features[key] = {
            "dtype": "video",
            "shape": [row["video.height"], row["video.width"], row["video.channels"]],
            "names": ["height", "width", "channels"],
            "info": info,
        }
    for name, dtype in INDEX_FEATURES.items():
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    total = len(episodes)
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": None,
        "total_episodes": total,
        "total_frames": sum(e.length for e in episodes),
        "total_tasks": 1,
        "chunks_size": chunks_size,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": video_mb,
        "fps": fps,
        "splits": {"train": f"0:{total}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }
