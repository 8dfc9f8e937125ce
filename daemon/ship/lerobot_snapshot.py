"""LeRobot's ``meta/`` and ``data/`` under a robot's prefix: a snapshot of the episodes whose videos are shipped.

A root that holds a LeRobot v3 dataset (written by LeRobot while recording beside the service,
or by robovid's export) is shipped so that the prefix is a LeRobot dataset too:
``LeRobotDataset(repo_id, root=<the prefix>)`` loads it where the prefix is a folder (a NAS
through ``file://``), or once downloaded whole. The remote copy is **restricted to the
episodes 0..M-1** for which everything is readable locally and every video file is committed:

- a row in a complete episodes file (LeRobot leaves the one it writes to without a footer
  until ``finalize()``; such a file is not read, so its episodes wait);
- its frames in a complete data file, as many as its ``length``;
- for every video feature, its ``videos/{key}/chunk_index``/``file_index`` naming a chunk file
  that is in the manifest (shipped and verified before this snapshot is written).

Files whose episodes all fall below M are shipped byte for byte; the one file that straddles M
is rewritten with only its rows below M (schema and metadata kept). ``info.json`` and
``stats.json`` are the local bytes when M is every episode the root has; otherwise info.json
says M episodes and their frames, and stats.json is aggregated from those episodes' own
statistics (their ``stats/...`` columns), as LeRobot aggregates them.

**Upload order** (:mod:`.commit`): tasks, episodes files, data files, stats.json, info.json. Every
generation only adds whole episodes to the one before, so wherever a kill stops the upload,
the prefix holds info.json's episodes <= the data files' <= the episodes files': LeRobot loads
it (it refuses a dataset whose data lacks an episode info.json counts, and fails on a frame
whose episode has no episodes row; neither can happen). A reader that reads *while* a commit
writes can still pair older episodes files with newer data files, if the whole upload of both
falls between its two reads; the manifest's SHA-256 of every object is how a careful reader
checks its copy (read the manifest before and after).

:func:`held_files` names the committed chunk files that hold an episode at or past M: the
remote LeRobot metadata does not cover them yet, so retention keeps them on the robot.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robovid.layout import (
    LEROBOT_DATA_PATH,
    LEROBOT_VIDEO_PATH,
    ChunkLocation,
    chunk_key,
    info_json_path,
    lerobot_episodes_files,
    stats_json_path,
    tasks_path,
)
from robovid.lerobot_meta import encode_info, read_info
from robovid.lerobot_stats import FeatureStats, aggregate_stats, stats_to_json

LEROBOT_PREFIXES = ("meta/", "data/")
"""The keys this producer owns under a robot's prefix (``meta/robovid/`` excepted: robovid's own)."""
_ROBOVID_META = "meta/robovid/"


def owns(key: str) -> bool:
    """Is ``key`` a LeRobot metadata object (as opposed to a chunk file or robovid's own metadata)?"""
    return key.startswith(LEROBOT_PREFIXES) and not key.startswith(_ROBOVID_META)


@dataclass(frozen=True)
class LeRobotSnapshot:
    """The LeRobot files of the shipped episodes 0..M-1, in the order they are uploaded."""

    episodes: int
    """M: every episode below it is in the snapshot, with its data and videos."""
    frames: int
    objects: dict[str, bytes] = field(default_factory=dict)
    """By key, in upload order: tasks, episodes files, data files, stats.json, info.json last."""


@dataclass
class _Parquet:
    """A complete Parquet file read once: its bytes, and its table (a data file: its episode_index column only)."""

    key: str
    data: bytes
    table: pa.Table
    _counts: Counter[int] | None = None

    def rows_of(self, episode: int) -> int:
        """How many rows of this episode the file holds (counted once per file)."""
        if self._counts is None:
            self._counts = Counter(self.table.column("episode_index").to_pylist())
        return self._counts.get(episode, 0)


def lerobot_snapshot(root: Path, committed: set[str]) -> LeRobotSnapshot | None:
    """The snapshot of the root's LeRobot v3 dataset restricted to episodes whose videos are in ``committed``.

    None when the root holds no LeRobot v3 dataset. Raises LeRobotMetadataError while LeRobot
    rewrites info.json (read again on the next pass).
    """
    info = read_info(root)
    if info is None or not info.is_lerobot_v3:
        return None
    tasks = _read_file(tasks_path(root))
    if tasks is None or _parquet(tasks) is None:
        return LeRobotSnapshot(0, 0)
    episode_files = [f for f in (_read_parquet(root, p) for p in lerobot_episodes_files(root)) if f is not None]
    rows = {int(r["episode_index"]): r for f in episode_files for r in f.table.to_pylist()}
    data_path = str(info.data.get("data_path", LEROBOT_DATA_PATH))
    video_path = str(info.data.get("video_path", LEROBOT_VIDEO_PATH))
    data_files: dict[str, _Parquet | None] = {}
    count = 0
    while count < info.total_episodes and count in rows:
        row = rows[count]
        key = data_path.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
        if key not in data_files:
            data_files[key] = _read_parquet(root, root / key, columns=["episode_index"])
        data = data_files[key]
        if data is None or data.rows_of(count) != int(row["length"]):
            break
        if not all(_video_key(row, k, video_path) in committed for k in info.video_keys):
            break
        count += 1
    if count == 0:
        return LeRobotSnapshot(0, 0)
    frames = sum(int(rows[e]["length"]) for e in range(count))
    whole = count == info.total_episodes
    objects: dict[str, bytes | None] = {_key(tasks_path): tasks}
    for parquet in episode_files + [f for f in data_files.values() if f is not None]:
        restricted = _restricted(parquet, count)
        if restricted is not None:
            objects[parquet.key] = restricted
    objects[_key(stats_json_path)] = _stats(root, whole, [rows[e] for e in range(count)])
    objects[_key(info_json_path)] = info_bytes(root, info.data, whole, count, frames)
    return LeRobotSnapshot(count, frames, {k: v for k, v in objects.items() if v is not None})


def held_files(segment_rows: Iterable[Mapping[str, Any]], episodes: int) -> set[str]:
    """Chunk files (keys) holding an episode at or past ``episodes`` (M): retention must keep them local."""
    return {
        chunk_key(row["video_key"], ChunkLocation(row["chunk_index"], row["file_index"]))
        for row in segment_rows
        if int(row["episode_index"]) >= episodes
    }


def info_bytes(root: Path, data: Mapping[str, Any], whole: bool, episodes: int, frames: int) -> bytes:
    if whole:
        local = _read_file(info_json_path(root))
        if local is not None and json.loads(local) == data:
            return local
    restricted = dict(data) | {"total_episodes": episodes, "total_frames": frames}
    restricted["splits"] = {"train": f"0:{episodes}"}
    return encode_info(restricted)


def _stats(root: Path, whole: bool, rows: list[dict[str, Any]]) -> bytes | None:
    local = _read_file(stats_json_path(root))
    if whole and local is not None:
        return local
    per_episode = [_episode_stats(row) for row in rows]
    if not per_episode or any(not stats for stats in per_episode):
        return local  # episodes without their statistics: the root's own file is the best there is
    try:
        total = aggregate_stats(per_episode)
    except (KeyError, ValueError):  # a feature without mean/std/count, or shapes that differ: not LeRobot's
        return local
    return json.dumps(stats_to_json(total), indent=4).encode()


def _episode_stats(row: Mapping[str, Any]) -> dict[str, FeatureStats]:
    stats: dict[str, FeatureStats] = {}
    for column, value in row.items():
        if not column.startswith("stats/") or value is None:
            continue
        feature, _, name = column.removeprefix("stats/").rpartition("/")
        stats.setdefault(feature, {})[name] = np.asarray(value)
    return stats


def _video_key(row: Mapping[str, Any], key: str, video_path: str) -> str | None:
    chunk, file = row.get(f"videos/{key}/chunk_index"), row.get(f"videos/{key}/file_index")
    if chunk is None or file is None:
        return None  # not encoded yet (LeRobot-recorded root, robovid still at work)
    path = video_path.format(video_key=key, chunk_index=int(chunk), file_index=int(file))
    return path if path == chunk_key(key, ChunkLocation(int(chunk), int(file))) else None


def _restricted(parquet: _Parquet, episodes: int) -> bytes | None:
    """The file's bytes when all its rows are below ``episodes``; else only those rows; None when none is."""
    keep = pc.less(parquet.table.column("episode_index"), episodes)
    kept = int(pc.sum(keep).as_py() or 0)
    if kept == parquet.table.num_rows:
        return parquet.data
    if kept == 0:
        return None
    whole = pq.read_table(io.BytesIO(parquet.data))  # the one file that straddles M: read in full, once
    sink = io.BytesIO()
    pq.write_table(whole.filter(keep), sink, compression="snappy")
    return sink.getvalue()


def _read_parquet(root: Path, path: Path, columns: list[str] | None = None) -> _Parquet | None:
    """A complete Parquet file as bytes and table, read once (None while its writer has it open)."""
    data = _read_file(path)
    table = _parquet(data, columns) if data is not None else None
    if data is None or table is None:
        return None
    return _Parquet(path.relative_to(root).as_posix(), data, table)


def _parquet(data: bytes, columns: list[str] | None = None) -> pa.Table | None:
    try:
        return pq.read_table(io.BytesIO(data), columns=columns)
    except (OSError, pa.ArrowException):
        return None


def _key(path_of: Any) -> str:
    return str(path_of(Path()).as_posix())


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
