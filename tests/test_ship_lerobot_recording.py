"""robovid-ship beside a LeRobot recording: what is shipped while LeRobot still writes, and after it finalized.

The root is written the way LeRobot 0.4.4 writes one with its encoding off (tests/lerobot_files.py:
info.json rewritten in place at each save, the episodes file and the data file through
ParquetWriters that have no footer until ``finalize()``), the real service encodes its PNGs
(``ROBOVID_LEROBOT_ENCODE``) and seals its finished files, the real shipper ships them to moto's
S3 server. While LeRobot has its files open, the shipped videos are committed but the remote
holds no LeRobot dataset, and retention deletes none of them; once LeRobot finalized and
robovid wrote its video columns, the remote dataset is the episodes whose videos are shipped,
and the files it covers go.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from daemon_harness import wait_for
from lerobot_files import CAMERAS, Session
from lerobot_prefix import check_lerobot_prefix, folder_objects
from s3server import MotoServer
from ship_harness import Bucket, check_fully_shipped, file_hashes, journal_states, s3_dest, sealed_keys, start_shipper
from test_ship_lerobot import check_frames, download, lerobot_load

from robovid.layout import ChunkLocation, chunk_key
from robovid.lerobot_tasks import tasks_parquet
from robovid.metadata import read_segments

FRAMES = 12
EPISODES = 4


class RecordingWithData(Session):
    """tests/lerobot_files.Session plus what LeRobot also writes at each save: the task table and the frames'
    rows in ``data/chunk-000/file-000.parquet``, through a writer left open until ``finalize()``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._data: pq.ParquetWriter | None = None

    def save(self, length: int) -> None:
        episode, start = len(self.lengths), sum(self.lengths)
        (self.root / "meta" / "tasks.parquet").write_bytes(tasks_parquet(["stack the blocks"]))
        rows = pa.table(
            {
                "observation.state": pa.array([[episode, i] for i in range(length)], pa.list_(pa.float32())),
                "action": pa.array([[i, episode] for i in range(length)], pa.list_(pa.float32())),
                "timestamp": pa.array([i / self.fps for i in range(length)], pa.float32()),
                "frame_index": pa.array(range(length), pa.int64()),
                "episode_index": pa.array([episode] * length, pa.int64()),
                "index": pa.array(range(start, start + length), pa.int64()),
                "task_index": pa.array([0] * length, pa.int64()),
            }
        )
        if self._data is None:
            path = self.root / "data" / "chunk-000" / "file-000.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data = pq.ParquetWriter(path, schema=rows.schema, compression="snappy")
        self._data.write_table(rows)
        super().save(length)

    def finalize(self) -> None:
        super().finalize()
        if self._data is not None:
            self._data.close()
            self._data = None


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOVID_")}
    env |= {"ROBOVID_MIN_FREE_MB": "0", "ROBOVID_VIDEO_FILE_SIZE_MB": "0.01", "ROBOVID_VCODEC": "libsvtav1"}
    env |= {"ROBOVID_LEROBOT_ENCODE": "1", "ROBOVID_LEROBOT_QUIET_S": "0.5", "SVT_LOG": "1"}
    command = [sys.executable, "-m", "robovid_watch.cli", *args, str(root)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


def shipped_episodes(root: Path, sealed: set[str]) -> int:
    """M: how many episodes from 0 have every camera's segment in a sealed (shippable) file."""
    places: dict[int, set[str]] = {}
    for row in read_segments(root).to_pylist():
        key = chunk_key(row["video_key"], ChunkLocation(row["chunk_index"], row["file_index"]))
        places.setdefault(row["episode_index"], set()).add(key)
    count = 0
    while count in places and len(places[count]) == len(CAMERAS) and places[count] <= sealed:
        count += 1
    return count


def episodes_in(root: Path) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for row in read_segments(root).to_pylist():
        key = chunk_key(row["video_key"], ChunkLocation(row["chunk_index"], row["file_index"]))
        found.setdefault(key, set()).add(row["episode_index"])
    return found


def test_files_shipped_during_a_lerobot_session_stay_until_the_remote_dataset_lists_their_episodes(
    tmp_path: Path, s3_server: MotoServer
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    session = RecordingWithData(root)
    for episode in range(EPISODES):
        session.record(episode, FRAMES)
        session.save(FRAMES)
    session.flush()  # rows written, no footer yet: LeRobot still has its files open
    processed = cli(root, "process", "--no-progress")
    assert processed.returncode == 0 and f"done {2 * EPISODES}, failed 0" in processed.stdout, processed.stderr[-2000:]
    originals = file_hashes(root)
    sealed = sealed_keys(root)
    shipped = shipped_episodes(root, sealed)
    assert 1 <= shipped < EPISODES, f"{sealed}: the test wants some episodes shipped and some not"
    bucket = Bucket(s3_server, s3_server.new_bucket())
    shipper = start_shipper(root, s3_dest(bucket.name), s3_server.url)
    try:
        wait_for(lambda: set(journal_states(root).values()) == {"committed"}, "all committed", daemon=shipper)
        wait_for(lambda: bool(shipper.events_named("kept_for_lerobot_meta")), "files kept", daemon=shipper)
        remote = bucket.objects()
        assert not [k for k in remote if k.startswith(("meta/info.json", "meta/episodes/", "data/"))], sorted(remote)
        assert file_hashes(root) == originals, "nothing deleted while the remote has no dataset listing them"
        session.finalize()
        columns = cli(root, "lerobot")
        assert columns.returncode == 0, columns.stdout + columns.stderr[-2000:]
        covered = {k for k, episodes in episodes_in(root).items() if k in sealed and max(episodes) < shipped}
        wait_for(
            lambda: {k for k, s in journal_states(root).items() if s == "pruned"} == covered,
            "the files the remote dataset covers pruned",
            daemon=shipper,
        )
    finally:
        assert shipper.stop() == 0
    assert covered, "some files were covered"
    remote = bucket.objects()
    assert {k for k in sealed if (root / k).exists()} == sealed - covered, "a file the remote does not cover went"
    prefix = check_lerobot_prefix(remote)
    assert prefix.info["total_episodes"] == shipped
    assert json.loads((root / "meta" / "info.json").read_text())["total_episodes"] == EPISODES
    folder = download(bucket, tmp_path / "download")
    assert folder_objects(folder) == remote
    assert check_frames(folder, prefix) == len(CAMERAS) * shipped * FRAMES
    results = lerobot_load(folder)
    if results is not None:
        print(f"LeRobot loaded {folder}: {results}")
        assert results["dataloader"]["frames"] == len(CAMERAS) * shipped * FRAMES
        assert results["dataloader"]["wrong"] == 0 and results["indexing"]["wrong"] == 0, results
    if not [k for k in sealed if k not in covered]:
        check_fully_shipped(root, originals, bucket)
