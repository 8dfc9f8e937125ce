"""A LeRobot root shipped by robovid-ship is a LeRobot dataset at the destination: its shipped episodes only.

The root is made by the real service and robovid's export (``robovid lerobot``): 6 episodes of 2
cameras, 2 finished (sealed) files per camera holding episodes 0-3, episodes 4-5 in the open
files. The real shipper (a subprocess) ships to moto's S3 server or to a folder (``file://``, a
mounted NAS). The prefix is checked without LeRobot (tests/lerobot_prefix.py: LeRobot v3's
layout, episodes 0..3 only, every named video shipped and verified; each frame decoded by
robovid is the one burnt into it) and, when ``ROBOVID_LEROBOT_PYTHON`` names a python with
LeRobot 0.4.x, loaded by ``LeRobotDataset(repo_id, root=...)`` with every frame checked.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ShipTemplate
from daemon_harness import wait_for
from lerobot_prefix import LeRobotPrefix, check_lerobot_prefix, check_loadable_state, folder_objects
from prom import metric, read_metrics
from s3server import CREDENTIALS, MotoServer
from ship_harness import (
    ROBOT,
    SMALL_LEROBOT,
    Bucket,
    all_sealed_files,
    check_fully_shipped,
    copied_root,
    file_hashes,
    journal_states,
    sealed_keys,
    ship_until,
    start_shipper,
)

from robovid.decode import decode_video_frames
from robovid.layout import info_json_path
from robovid.synthetic import read_index

LEROBOT_PYTHON = os.environ.get("ROBOVID_LEROBOT_PYTHON", "")
CLIENT = Path(__file__).resolve().parent / "lerobot_client.py"
REPO = Path(__file__).resolve().parent.parent
SHIPPED_EPISODES = 4
"""Episodes 0-3 are in the sealed files of both cameras; 4-5 in the open ones, never shipped."""


def check_frames(folder: Path, prefix: LeRobotPrefix) -> int:
    """Decode every frame of every episode from the prefix's videos at LeRobot's timestamps: each the burnt one."""
    fps = prefix.info["fps"]
    checked = 0
    for row in prefix.episodes:
        for key in prefix.video_keys:
            path = folder / prefix.info["video_path"].format(
                video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"]
            )
            start = row[f"videos/{key}/from_timestamp"]
            frames = decode_video_frames(path, [start + i / fps for i in range(row["length"])], 1e-4, backend="pyav")
            images = np.rint(np.asarray(frames).transpose(0, 2, 3, 1) * 255).astype(np.uint8)
            assert [read_index(image) for image in images] == [(row["episode_index"], i) for i in range(row["length"])]
            checked += len(images)
    return checked


def lerobot_load(folder: Path) -> dict[str, dict[str, Any]] | None:
    """LeRobot 0.4.x's own LeRobotDataset over the folder (tests/lerobot_client.py load); None without LeRobot."""
    if not LEROBOT_PYTHON or shutil.which(LEROBOT_PYTHON) is None:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOVID_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [LEROBOT_PYTHON, str(CLIENT), "load", str(folder)], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {event["event"]: event for event in events}


def check_lerobot_loads(folder: Path, frames: int) -> None:
    results = lerobot_load(folder)
    if results is None:
        return
    print(f"LeRobot loaded {folder}: {results}")
    assert results["dataloader"]["frames"] == frames and results["dataloader"]["wrong"] == 0, results
    assert results["dataloader"]["episodes"] == SHIPPED_EPISODES
    assert results["indexing"]["frames"] == frames and results["indexing"]["wrong"] == 0, results
    assert results["delta_timestamps"]["wrong"] == 0, results


def episode_rows(objects: dict[str, bytes], folder: str) -> set[int]:
    """The episodes the Parquet files under ``folder`` have rows of."""
    found: set[int] = set()
    for key in [k for k in objects if k.startswith(folder) and k.endswith(".parquet")]:
        found.update(pq.read_table(io.BytesIO(objects[key]), columns=["episode_index"])["episode_index"].to_pylist())
    return found


def _gauge(path: Path, name: str) -> float | None:
    return metric(read_metrics(path), name) if path.exists() else None


def count_one_episode(info_path: Path) -> bytes:
    """Make the local info.json count episode 0 only, as LeRobot's does while it records episode 1; the old bytes."""
    whole = info_path.read_bytes()
    one = {"total_episodes": 1, "total_frames": SMALL_LEROBOT.frames, "splits": {"train": "0:1"}}
    info_path.write_text(json.dumps(json.loads(whole) | one, indent=4))
    return whole


def download(bucket: Bucket, destination: Path) -> Path:
    """The robot's prefix copied whole with s3fs ``get`` (what a training job does before loading it)."""
    import s3fs

    fs = s3fs.S3FileSystem(
        key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": bucket.server.url},
        skip_instance_cache=True,
    )
    fs.get(f"{bucket.name}/{bucket.prefix}", str(destination), recursive=True)
    return destination


def test_a_lerobot_root_shipped_to_s3_is_a_dataset_of_its_shipped_episodes_after_a_download(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate
) -> None:
    root, originals = copied_root(ship_template(SMALL_LEROBOT), tmp_path)
    bucket = Bucket.new(s3_server)
    ship_until(root, bucket.dest, s3_server.url, "pruned", "every sealed file pruned")
    remote = check_fully_shipped(root, originals, bucket)
    prefix = check_lerobot_prefix(remote)
    assert "meta/stats.json" in remote
    assert prefix.info["total_episodes"] == SHIPPED_EPISODES and prefix.info["total_frames"] == 4 * SMALL_LEROBOT.frames
    assert json.loads(info_json_path(root).read_bytes())["total_episodes"] == 6, "the local dataset is left whole"
    folder = download(bucket, tmp_path / "download")
    assert folder_objects(folder) == remote
    frames = check_frames(folder, prefix)
    assert frames == 2 * 4 * SMALL_LEROBOT.frames
    check_lerobot_loads(folder, frames)


def test_a_lerobot_root_shipped_to_a_folder_loads_where_it_lies(tmp_path: Path, ship_template: ShipTemplate) -> None:
    """A ``file://`` destination (a mounted NAS): ``LeRobotDataset(repo_id, root=<dest>/<robot>)`` directly."""
    root, originals = copied_root(ship_template(SMALL_LEROBOT), tmp_path)
    nas = tmp_path / "nas"
    nas.mkdir()
    ship_until(root, nas.as_uri(), None, "pruned", "every sealed file pruned")
    objects = folder_objects(nas / ROBOT)
    check_loadable_state(root, originals, objects)
    prefix = check_lerobot_prefix(objects)
    frames = check_frames(nas / ROBOT, prefix)
    check_lerobot_loads(nas / ROBOT, frames)


def test_retention_keeps_every_file_the_remote_lerobot_meta_does_not_cover_until_it_does(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate
) -> None:
    """The local info.json counts one episode (LeRobot still recording, an export behind): every sealed file is
    shipped and committed, but only the file with nothing past episode 0 may go... none here: each holds
    episode 1, 2 or 3. Once info.json counts all 6, the remote meta follows (no new file needed) and they go."""
    root, originals = copied_root(ship_template(SMALL_LEROBOT), tmp_path)
    info_path = info_json_path(root)
    whole = count_one_episode(info_path)
    bucket = Bucket.new(s3_server)
    prom = tmp_path / "metrics" / "robovid_ship.prom"
    prom.parent.mkdir()
    shipper = start_shipper(root, bucket.dest, s3_server.url, ROBOVID_METRICS_DIR=str(prom.parent))
    sealed_bytes = sum((root / k).stat().st_size for k in sealed_keys(root))
    try:
        wait_for(all_sealed_files(root, "committed"), "every file committed", daemon=shipper)
        wait_for(lambda: bool(shipper.events_named("kept_for_lerobot_meta")), "files kept", daemon=shipper)
        wait_for(lambda: _gauge(prom, "robovid_ship_held_bytes") == sealed_bytes, "held bytes", daemon=shipper)
        assert _gauge(prom, "robovid_ship_lerobot_episodes") == 1
        remote = bucket.objects()
        assert check_lerobot_prefix(remote).info["total_episodes"] == 1
        assert set(journal_states(root).values()) == {"committed"}, "nothing pruned while the meta lags"
        assert file_hashes(root) == originals
        info_path.write_bytes(whole)
        wait_for(all_sealed_files(root, "pruned"), "pruned once covered", daemon=shipper)
        wait_for(lambda: _gauge(prom, "robovid_ship_lerobot_episodes") == SHIPPED_EPISODES, "M", daemon=shipper)
        assert _gauge(prom, "robovid_ship_held_bytes") == 0
    finally:
        assert shipper.stop() == 0
    remote = check_fully_shipped(root, originals, bucket)
    assert check_lerobot_prefix(remote).info["total_episodes"] == SHIPPED_EPISODES


@pytest.mark.parametrize("upload", [1, 2, 3, 4])
def test_kill_9_at_each_lerobot_meta_upload_leaves_a_loadable_prefix_and_loses_nothing(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate, upload: int
) -> None:
    """A remote generation of 1 episode grows to 4: the second commit uploads the episodes file, the data file,
    stats.json and info.json (tasks and the segment table are unchanged). Killed after each of them, the
    prefix is one LeRobot loads, nothing is lost, and the restarted shipper finishes the commit."""
    root, originals = copied_root(ship_template(SMALL_LEROBOT), tmp_path)
    info_path = info_json_path(root)
    whole = count_one_episode(info_path)
    bucket = Bucket.new(s3_server)
    ship_until(root, bucket.dest, s3_server.url, "committed", "generation of 1")
    info_path.write_bytes(whole)
    point = f"ship:after-metadata-object:{upload}"
    killed = start_shipper(root, bucket.dest, s3_server.url, ROBOVID_FAULT_POINT=point)
    wait_for(lambda: killed.process.poll() is not None, f"the kill at {point}")
    killed.kill()
    assert killed.process.returncode == -9
    remote = bucket.objects()
    check_loadable_state(root, originals, remote)
    assert json.loads(remote["meta/robovid/manifest.json"])["lerobot_episodes"] == 1, "not committed yet"
    grown = [len(episode_rows(remote, "meta/episodes/")), len(episode_rows(remote, "data/"))]
    grown.append(json.loads(remote["meta/info.json"])["total_episodes"])
    assert grown == [[1, 1, 1], [4, 1, 1], [4, 4, 1], [4, 4, 1], [4, 4, 4]][upload], "the kill landed mid-commit"
    folder = download(bucket, tmp_path / "killed")
    results = lerobot_load(folder)
    if results is not None:
        assert results["indexing"]["wrong"] == 0 and results["dataloader"]["wrong"] == 0, results
    second = ship_until(root, bucket.dest, s3_server.url, "pruned", "finished after the restart")
    remote = check_fully_shipped(root, originals, bucket)
    assert check_lerobot_prefix(remote).info["total_episodes"] == SHIPPED_EPISODES
    assert not second.events_named("file_shipped"), "committed files are not uploaded again"


def test_a_local_dataset_covering_fewer_episodes_never_shrinks_the_remote_one(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate
) -> None:
    """LeRobot reopens its episodes file (a resumed recording: no footer until it finalizes again): the local
    dataset reads as 0 episodes for a while. The remote one keeps its 4, byte for byte, and nothing fails."""
    root, _ = copied_root(ship_template(SMALL_LEROBOT), tmp_path)
    bucket = Bucket.new(s3_server)
    prom = tmp_path / "metrics" / "robovid_ship.prom"
    prom.parent.mkdir()
    shipper = start_shipper(root, bucket.dest, s3_server.url, ROBOVID_METRICS_DIR=str(prom.parent))
    episodes_file = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    try:
        wait_for(all_sealed_files(root, "pruned"), "every sealed file pruned", daemon=shipper)
        before = bucket.objects()
        episodes_file.write_bytes(episodes_file.read_bytes()[:-200])  # the footer gone, as while a writer has it
        for _ in range(2):  # two whole passes after the change (each rewrites the metrics file)
            stamp = prom.stat().st_mtime_ns
            wait_for(lambda stamp=stamp: prom.stat().st_mtime_ns != stamp, "a pass", daemon=shipper)  # type: ignore[misc]
        assert bucket.objects() == before, "the remote dataset was rewritten"
        assert _gauge(prom, "robovid_ship_lerobot_episodes") == SHIPPED_EPISODES
    finally:
        assert shipper.stop() == 0
    assert not shipper.events_named("metadata_unreadable")
    assert check_lerobot_prefix(before).info["total_episodes"] == SHIPPED_EPISODES
