"""Roots made by the real service, the real shipper as a subprocess, and the oracle every shipping test ends with.

The oracle (:func:`check_nothing_lost`): every chunk file the root held before shipping
began is, at any moment, either still on the local disk with its original bytes, or listed in
the remote manifest with its original size and SHA-256 *and* present in the bucket with
exactly those bytes. A file may be in both places; it may never be in neither.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from daemon_harness import Daemon, record, start_daemon, wait_for
from s3server import CREDENTIALS, MotoServer

from robovid.layout import ChunkLocation, chunk_key, segments_dir, videos_dir
from robovid.metadata import read_segments
from robovid_watch.finished import sealed_files
from robovid_watch.ship.journal import ShipJournal
from robovid_watch.ship.manifest import MANIFEST_KEY

ROBOT = "robot-7"
PREFIX = "fleet"
SHIP_MODULE = "robovid_watch.ship.main"
FAST_STORE = json.dumps({"config_kwargs": {"connect_timeout": 2, "read_timeout": 20, "retries": {"max_attempts": 1}}})
"""Short timeouts and no botocore retries: the shipper's own back-off is what is under test."""


@dataclass(frozen=True)
class RootSpec:
    """How a template root is recorded and encoded by the real service."""

    cameras: tuple[str, ...]
    episodes: int
    frames: int
    size: tuple[int, int]
    file_size_mb: float
    encoder: tuple[tuple[str, str], ...] = ()
    export_task: str = ""
    """When set, ``robovid lerobot ROOT --task`` makes the root a LeRobot v3 dataset after the encode."""


SMALL = RootSpec(
    ("front", "wrist cam"),
    episodes=6,
    frames=8,
    size=(64, 48),
    file_size_mb=0.01,
    encoder=(("ROBOVID_VCODEC", "libsvtav1"),),
)
"""About two 8-frame episodes per file as libsvtav1 encodes them (h264, the service's default, writes smaller ones):
3 files per camera, 2 of them finished."""
SMALL_LEROBOT = replace(SMALL, export_task="stack the blocks")
"""SMALL made a LeRobot v3 dataset by robovid's export (meta/ and data/ for all 6 episodes)."""
BIG = RootSpec(
    ("front",),
    episodes=3,
    frames=80,
    size=(320, 240),
    file_size_mb=8.0,
    encoder=(("ROBOVID_VCODEC", "h264"), ("ROBOVID_CRF", "0"), ("ROBOVID_PRESET", "ultrafast")),
)
"""Lossless H.264, ~3.4 MB an episode: one finished file of ~7 MB, more than one 5 MiB upload part."""


def make_root(spec: RootSpec, root: Path) -> Path:
    """Record episodes and run the real service over them once (``robovid process``); it seals what it finished."""
    record(root, list(spec.cameras), range(spec.episodes), num_frames=spec.frames, size=spec.size)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOVID_")}
    env.update(ROBOVID_MIN_FREE_MB="0", ROBOVID_VIDEO_FILE_SIZE_MB=str(spec.file_size_mb), SVT_LOG="1")
    env.update(dict(spec.encoder))
    subprocess.run(
        [sys.executable, "-m", "robovid_watch.cli", "process", str(root), "--no-progress"],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    if spec.export_task:
        subprocess.run(
            [sys.executable, "-m", "robovid_watch.cli", "lerobot", str(root), "--task", spec.export_task],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return root


def copy_root(template: Path, destination: Path) -> Path:
    shutil.copytree(template, destination, symlinks=True)
    return destination


def copied_root(template: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of a template root at ``tmp_path/root``, and its chunk files' hashes before anything is shipped."""
    root = copy_root(template, tmp_path / "root")
    return root, file_hashes(root)


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every chunk file under the root, by its key (``videos/...``)."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(videos_dir(root).rglob("file-*.mp4"))
    }


def sealed_keys(root: Path) -> set[str]:
    return {s.relative_key() for s in sealed_files(root)}


# the shipper -------------------------------------------------------------------------------------
def ship_env(dest: str, endpoint: str | None = None, **overrides: str) -> dict[str, str]:
    env = dict(
        CREDENTIALS,
        ROBOVID_SHIP_DEST=dest,
        ROBOVID_SHIP_ROBOT_ID=ROBOT,
        ROBOVID_SHIP_INTERVAL_S="0.3",
        ROBOVID_SHIP_BACKOFF_MAX_S="1",
        ROBOVID_SHIP_KEEP_GB="0",
        ROBOVID_SHIP_PART_MB="5",
        ROBOVID_SHIP_STORAGE_OPTIONS=FAST_STORE,
    )
    if endpoint is not None:
        env["AWS_ENDPOINT_URL_S3"] = endpoint
    env.update(overrides)
    return env


def start_shipper(root: Path, dest: str, endpoint: str | None = None, **overrides: str) -> Daemon:
    return start_daemon(root, module=SHIP_MODULE, **ship_env(dest, endpoint, **overrides))


def all_sealed_files(root: Path, state: str) -> Callable[[], bool]:
    """A condition for wait_for: every sealed file's journal record is in ``state`` (``committed``, ``pruned``)."""
    return lambda: set(journal_states(root).values()) == {state}


def ship_until(root: Path, dest: str, endpoint: str | None, state: str, what: str, **overrides: str) -> Daemon:
    """Run the real shipper until every sealed file is in ``state`` (waiting for ``what``), then stop it: exit 0."""
    shipper = start_shipper(root, dest, endpoint, **overrides)
    try:
        wait_for(all_sealed_files(root, state), what, daemon=shipper)
    finally:
        assert shipper.stop() == 0
    return shipper


def s3_dest(bucket: str) -> str:
    return f"s3://{bucket}/{PREFIX}"


# the bucket --------------------------------------------------------------------------------------
class Bucket:
    """What one test's bucket holds under the robot's prefix, read with boto3 over HTTP."""

    def __init__(self, server: MotoServer, name: str) -> None:
        self.server = server
        self.name = name
        self.prefix = f"{PREFIX}/{ROBOT}/"

    @classmethod
    def new(cls, server: MotoServer) -> Bucket:
        """A new, empty bucket on the server."""
        return cls(server, server.new_bucket())

    @property
    def dest(self) -> str:
        """The shipper's destination for this bucket (ROBOVID_SHIP_DEST)."""
        return s3_dest(self.name)

    def objects(self) -> dict[str, bytes]:
        client = self.server.client()
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=self.prefix):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                out[key] = client.get_object(Bucket=self.name, Key=item["Key"])["Body"].read()
        return out

    def manifest(self) -> dict[str, Any] | None:
        data = self.objects().get(MANIFEST_KEY)
        return json.loads(data) if data is not None else None

    def committed(self) -> dict[str, dict[str, Any]]:
        manifest = self.manifest()
        return {entry["key"]: entry for entry in manifest["files"]} if manifest else {}

    def open_multipart_uploads(self) -> list[str]:
        uploads = self.server.client().list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        return [u["Key"] for u in uploads]

    def put(self, key: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.name, Key=self.prefix + key, Body=data)


def check_nothing_lost(root: Path, originals: dict[str, str], remote: dict[str, bytes] | None) -> None:
    """Every original file is local with its bytes, or committed and in the bucket with its bytes.

    ``remote`` is the robot's prefix as read from the store (``{}`` when it is unreachable).
    """
    manifest = json.loads(remote[MANIFEST_KEY]) if remote and MANIFEST_KEY in remote else {"files": []}
    committed = {entry["key"]: entry for entry in manifest["files"]}
    for key, digest in originals.items():
        local = root / key
        if local.exists():
            assert hashlib.sha256(local.read_bytes()).hexdigest() == digest, f"{key}: local bytes changed"
            continue
        assert key in committed, f"{key}: deleted locally but not in the remote manifest"
        assert committed[key]["sha256"] == digest, f"{key}: the manifest records another hash"
        assert remote is not None and key in remote, f"{key}: deleted locally, missing in the bucket"
        assert hashlib.sha256(remote[key]).hexdigest() == digest, f"{key}: deleted locally, corrupt in the bucket"


def check_fully_shipped(root: Path, originals: dict[str, str], bucket: Bucket) -> dict[str, bytes]:
    """Final state: every sealed file committed once and intact, no temp object or open upload left,
    remote segment rows exactly the local rows of the committed files. Returns the remote objects."""
    remote = bucket.objects()
    check_nothing_lost(root, originals, remote)
    committed = json.loads(remote[MANIFEST_KEY])["files"]
    keys = [entry["key"] for entry in committed]
    assert len(keys) == len(set(keys)), "a file is listed twice in the manifest"
    assert set(keys) == sealed_keys(root), "the manifest does not list exactly the sealed files"
    for entry in committed:
        assert hashlib.sha256(remote[entry["key"]]).hexdigest() == entry["sha256"] == originals[entry["key"]]
        assert len(remote[entry["key"]]) == entry["size_bytes"]
    assert not [k for k in remote if k.startswith(".robovid-incoming/")], "temp objects left behind"
    assert bucket.open_multipart_uploads() == [], "an unfinished multipart upload was left behind"
    assert _remote_rows(remote) == _local_rows(root, set(keys))
    return remote


def _remote_rows(remote: dict[str, bytes]) -> list[tuple[str, int, int, int]]:
    import io

    rows = []
    for key in sorted(k for k in remote if k.startswith(segments_dir(Path()).as_posix() + "/")):
        for row in pq.read_table(io.BytesIO(remote[key])).to_pylist():
            rows.append((row["video_key"], row["episode_index"], row["chunk_index"], row["file_index"]))
    return sorted(rows)


def _local_rows(root: Path, keys: set[str]) -> list[tuple[str, int, int, int]]:
    rows = []
    for row in read_segments(root).to_pylist():
        key = chunk_key(row["video_key"], ChunkLocation(row["chunk_index"], row["file_index"]))
        if key in keys:
            rows.append((row["video_key"], row["episode_index"], row["chunk_index"], row["file_index"]))
    return sorted(rows)


def journal_states(root: Path) -> dict[str, str]:
    return {r.relative_key(): r.state for r in ShipJournal(root).records()}
