"""DEST's LeRobot v3 files after a merge of LeRobot-recorded roots (:mod:`robovid.merge_lerobot`).

Written from DEST's merge state alone (each episode's kept data rows, meta/episodes row and task
table; the reference info.json) and DEST's segment table (its video places): ``data/`` with
``episode_index``, ``index`` and ``task_index`` renumbered through one merged task table,
``meta/episodes`` (video places, data places, per-episode statistics: the source's, with the
renumbered columns' recomputed), ``meta/tasks.parquet``, ``meta/stats.json`` (count-weighted means
and quantiles, pooled std, min/max: what LeRobot 0.4.4's ``aggregate_stats`` computes) and
``meta/info.json`` last (its totals are the commit point). Each file is replaced atomically and only
when it changes, so a rerun after a kill finishes the job and one after success writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robovid._faults import fault_point
from robovid.durable import atomic_output, write_bytes_durably
from robovid.errors import MergeError
from robovid.layout import LEROBOT_DATA_PATH, LEROBOT_EPISODES_PATH, info_json_path, stats_json_path, tasks_path
from robovid.lerobot_export import exportable
from robovid.lerobot_meta import VIDEO_COLUMNS, encode_info
from robovid.lerobot_stats import FeatureStats, aggregate_stats, flat_columns, stats_to_json, vector_stats
from robovid.lerobot_tasks import tasks_parquet
from robovid.merge_lerobot import load_episode, reference

EPISODES_FILE_ROWS = 1000


@dataclass
class _Episode:
    index: int
    data: pa.Table
    tasks: list[str]
    stats: dict[str, FeatureStats]
    segments: Mapping[str, Mapping[str, Any]]
    from_index: int = 0
    data_file: tuple[int, int] = (0, 0)


def export(dest: Path, segment_rows_of_dest: Sequence[Mapping[str, Any]], task: str | None, file_size_mb: float) -> int:
    """Write DEST's LeRobot v3 files for its episodes 0..N-1 (see the module docstring); how many episodes."""
    info = reference(dest)
    assert info is not None
    episodes_found, stopped = exportable(dest, segment_rows_of_dest)
    if stopped:
        raise MergeError(f"{dest}: the merged episodes cannot make one LeRobot dataset: {stopped}.")
    tasks: list[str] = []
    episodes: list[_Episode] = []
    start, data_file, data_bytes = 0, (0, 0), 0
    limit = float(info.get("data_files_size_in_mb", 100)) * 1024 * 1024
    chunks_size = int(info.get("chunks_size", 1000))
    for found in episodes_found:
        table, kept = load_episode(dest, found.index)
        texts = [task] if task is not None else [str(t) for t in kept["row"].get("tasks") or []]
        for text in texts:
            if text not in tasks:
                tasks.append(text)
        own = kept["tasks"]
        mapped = [task if task is not None else own[i] for i in table["task_index"].to_pylist()]
        for text in mapped:
            if text not in tasks:
                tasks.append(text)
        length = table.num_rows
        columns = {
            "episode_index": np.full(length, found.index, np.int64),
            "index": np.arange(start, start + length, dtype=np.int64),
            "task_index": np.array([tasks.index(t) for t in mapped], np.int64),
        }
        for name, values in columns.items():
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.int64()))
        stats = _row_stats(kept["row"]) | {name: vector_stats(values) for name, values in columns.items()}
        if data_bytes and data_bytes + table.nbytes > limit:
            data_file, data_bytes = _next(data_file, chunks_size), 0
        episodes.append(_Episode(found.index, table, texts, stats, found.segments, start, data_file))
        start, data_bytes = start + length, data_bytes + table.nbytes
    if not episodes:
        return 0
    schema = episodes[0].data.schema
    for place in sorted({e.data_file for e in episodes}):
        members = [e.data.cast(schema) for e in episodes if e.data_file == place]
        _write_table(
            dest / LEROBOT_DATA_PATH.format(chunk_index=place[0], file_index=place[1]), pa.concat_tables(members)
        )
    fault_point("merge-lerobot:after-data")
    keys = list(episodes[0].segments)
    order = list(info["features"])
    for number in range(0, len(episodes), EPISODES_FILE_ROWS):
        place = _next_n((0, 0), number // EPISODES_FILE_ROWS, chunks_size)
        rows = [_episodes_row(e, keys, order, place) for e in episodes[number : number + EPISODES_FILE_ROWS]]
        path = dest / LEROBOT_EPISODES_PATH.format(chunk_index=place[0], file_index=place[1])
        _write_table(path, pa.Table.from_pylist(rows))
    _write_bytes(tasks_path(dest), tasks_parquet(tasks))
    stats = aggregate_stats([e.stats for e in episodes])
    _write_bytes(stats_json_path(dest), json.dumps(stats_to_json(stats), indent=4).encode())
    fault_point("merge-lerobot:before-info")
    total = len(episodes)
    merged = dict(info) | {
        "total_episodes": total,
        "total_frames": start,
        "total_tasks": len(tasks),
        "video_files_size_in_mb": file_size_mb,
        "splits": {"train": f"0:{total}"},
    }
    _write_bytes(info_json_path(dest), encode_info(merged))
    return total


def _row_stats(row: Mapping[str, Any]) -> dict[str, FeatureStats]:
    """An episode's statistics from its ``stats/{feature}/{key}`` columns."""
    stats: dict[str, FeatureStats] = {}
    for column, value in row.items():
        if column.startswith("stats/") and value is not None:
            feature, key = column[len("stats/") :].rsplit("/", 1)
            stats.setdefault(feature, {})[key] = np.asarray(value)
    return stats


def _episodes_row(episode: _Episode, keys: list[str], order: list[str], place: tuple[int, int]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "episode_index": episode.index,
        "tasks": episode.tasks,
        "length": episode.data.num_rows,
        "data/chunk_index": episode.data_file[0],
        "data/file_index": episode.data_file[1],
        "dataset_from_index": episode.from_index,
        "dataset_to_index": episode.from_index + episode.data.num_rows,
    }
    for key in keys:
        for name in VIDEO_COLUMNS:
            row[f"videos/{key}/{name}"] = episode.segments[key][name]
    row |= flat_columns(episode.stats, order)
    row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = place
    return row


def _next(location: tuple[int, int], chunks_size: int) -> tuple[int, int]:
    chunk, file = location
    return (chunk + 1, 0) if file + 1 >= chunks_size else (chunk, file + 1)


def _next_n(location: tuple[int, int], n: int, chunks_size: int) -> tuple[int, int]:
    for _ in range(n):
        location = _next(location, chunks_size)
    return location


def _write_table(path: Path, table: pa.Table) -> None:
    """Replace a Parquet file unless it already holds exactly this table."""
    if path.exists():
        try:
            if pq.read_table(path).equals(table):
                return
        except (OSError, pa.ArrowException):
            pass
    with atomic_output(path) as temp:
        pq.write_table(table, temp, compression="snappy", use_dictionary=True)


def _write_bytes(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    write_bytes_durably(path, data)
