"""What a shipped robot prefix must hold to be a LeRobot v3 dataset, checked without LeRobot.

:func:`check_lerobot_prefix` reads the prefix's objects (from the bucket or a folder) the way
LeRobot 0.4.4 does (``meta/info.json``, ``meta/tasks.parquet``, every
``meta/episodes/*/*.parquet``, every ``data/*/*.parquet``, ``meta/stats.json``, the videos by
info.json's ``video_path``) and checks its v3 layout: the columns LeRobot reads, episodes
0..M-1 in order, each with ``length`` frames in the data files at its ``dataset_from_index``,
task indices into the task table, every video it names present with the bytes the manifest
lists. :func:`check_loadable_state` is the weaker check of a state a killed shipper leaves:
what LeRobot needs to load it (info.json's episodes <= the data files' <= the episodes files').
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from ship_harness import check_nothing_lost

from robovid.layout import LEROBOT_EPISODES_PATH
from robovid_watch.ship.manifest import MANIFEST_KEY

EPISODE_COLUMNS = (
    "episode_index",
    "tasks",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
    "meta/episodes/chunk_index",
    "meta/episodes/file_index",
)
VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
DATA_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


@dataclass(frozen=True)
class LeRobotPrefix:
    info: dict[str, Any]
    episodes: list[dict[str, Any]]
    """Rows of the episodes files, by episode_index."""
    video_keys: list[str]


def folder_objects(folder: Path) -> dict[str, bytes]:
    """Every file under a folder by its ``/``-path: what a ``file://`` prefix holds."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tables(objects: dict[str, bytes], prefix: str) -> dict[str, pa.Table]:
    """LeRobot's glob ``{prefix}/*/*.parquet``, each read whole."""
    keys = sorted(k for k in objects if k.startswith(prefix) and k.count("/") == prefix.count("/") + 1)
    return {k: pq.read_table(io.BytesIO(objects[k])) for k in keys if k.endswith(".parquet")}


def check_lerobot_prefix(objects: dict[str, bytes]) -> LeRobotPrefix:
    """A complete, consistent LeRobot v3 dataset of episodes 0..M-1 (M from info.json and the manifest)."""
    manifest = json.loads(objects[MANIFEST_KEY])
    info = json.loads(objects["meta/info.json"])
    assert info["codebase_version"].startswith("v3.")
    total = info["total_episodes"]
    assert total == manifest["lerobot_episodes"] > 0
    assert info["splits"] == {"train": f"0:{total}"}
    keys = [k for k, ft in info["features"].items() if ft["dtype"] == "video"]
    tasks = pq.read_table(io.BytesIO(objects["meta/tasks.parquet"])).to_pylist()
    assert [t["task_index"] for t in tasks] == list(range(len(tasks)))
    assert all(isinstance(t["__index_level_0__"], str) for t in tasks), "pandas' index column holds the task text"
    episodes: list[dict[str, Any]] = []
    for key, table in _tables(objects, "meta/episodes/").items():
        for name in EPISODE_COLUMNS + tuple(f"videos/{k}/{c}" for k in keys for c in VIDEO_COLUMNS):
            assert name in table.column_names, f"{key}: no column {name!r}"
        for row in table.to_pylist():
            where = LEROBOT_EPISODES_PATH.format(
                chunk_index=row["meta/episodes/chunk_index"], file_index=row["meta/episodes/file_index"]
            )
            assert where == key, f"episode {row['episode_index']} says it is in {where}, found in {key}"
            episodes.append(row)
    assert [r["episode_index"] for r in episodes] == list(range(total)), "episodes 0..M-1, once each, in order"
    assert sum(r["length"] for r in episodes) == info["total_frames"]
    frames: Counter[int] = Counter()
    for key, table in _tables(objects, "data/").items():
        assert all(name in table.column_names for name in DATA_COLUMNS), f"{key}: {table.column_names}"
        for row in table.select(list(DATA_COLUMNS)).to_pylist():
            episode = episodes[row["episode_index"]]
            assert row["index"] == episode["dataset_from_index"] + row["frame_index"]
            assert row["task_index"] < len(tasks)
            assert key == info["data_path"].format(
                chunk_index=episode["data/chunk_index"], file_index=episode["data/file_index"]
            )
            frames[row["episode_index"]] += 1
    assert dict(frames) == {r["episode_index"]: r["length"] for r in episodes}, "each episode's frames, no more"
    if "meta/stats.json" in objects:  # LeRobot loads a dataset without one (load_stats returns None)
        assert isinstance(json.loads(objects["meta/stats.json"]), dict)
    _check_videos(objects, manifest, info, episodes, keys)
    return LeRobotPrefix(info, episodes, keys)


def _check_videos(
    objects: dict[str, bytes],
    manifest: dict[str, Any],
    info: dict[str, Any],
    rows: list[dict[str, Any]],
    keys: list[str],
) -> None:
    """Every video an episode names is in the prefix with the bytes the manifest lists for it."""
    committed = {entry["key"]: entry for entry in manifest["files"]}
    for row in rows:
        for key in keys:
            path = info["video_path"].format(
                video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"]
            )
            assert path in objects, f"episode {row['episode_index']} names {path}, not in the prefix"
            assert hashlib.sha256(objects[path]).hexdigest() == committed[path]["sha256"]


def check_loadable_state(root: Path, originals: dict[str, str], objects: dict[str, bytes]) -> None:
    """What a killed shipper may leave: nothing lost, and a LeRobot dataset LeRobot loads, if any.

    info.json's episodes all have their frames in the data files, every frame's episode has its
    row, every row's videos are in the prefix, verified (the manifest lists them, or they were
    published with these bytes before it was written).
    """
    check_nothing_lost(root, originals, objects)
    if "meta/info.json" not in objects:
        assert not [k for k in objects if k.startswith(("meta/episodes/", "data/"))], "LeRobot files without info"
        return
    info = json.loads(objects["meta/info.json"])
    rows = {r["episode_index"]: r for t in _tables(objects, "meta/episodes/").values() for r in t.to_pylist()}
    data_episodes: Counter[int] = Counter()
    for table in _tables(objects, "data/").values():
        data_episodes.update(table.column("episode_index").to_pylist())
    assert set(range(info["total_episodes"])) <= set(data_episodes), "info.json counts an episode without data"
    assert set(data_episodes) <= set(rows), "a frame whose episode has no episodes row"
    keys = [k for k, ft in info["features"].items() if ft["dtype"] == "video"]
    for row in rows.values():
        for key in keys:
            path = info["video_path"].format(
                video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"]
            )
            assert path in objects, f"episode {row['episode_index']} names {path}, not in the prefix"
            assert hashlib.sha256(objects[path]).hexdigest() == originals[path], f"{path}: not the original bytes"
