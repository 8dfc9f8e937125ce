"""What a robot's prefix at the destination holds, and the remote metadata that points at it.

The remote prefix is laid out like a local root, so a reader can treat it as one; where the
root holds a LeRobot v3 dataset, the prefix is one too (:mod:`.lerobot_snapshot`)::

    {dest}/{robot}/videos/{camera}/chunk-XXX/file-YYY.mp4        finished chunk files, immutable
    {dest}/{robot}/.cache/huggingface/robovid/segments/part-NNNNNN.parquet   segment rows of shipped files only
    {dest}/{robot}/meta/info.json, meta/tasks.parquet, meta/stats.json,
                   meta/episodes/chunk-XXX/file-YYY.parquet, data/chunk-XXX/file-YYY.parquet
                                                                  LeRobot's files, episodes 0..M-1 whose videos are shipped
    {dest}/{robot}/meta/robovid/manifest.json                    the commit point, written last

The **manifest** lists every shipped file with its size and SHA-256 (and every metadata
object with its own, and M), in the order they were committed. Writing it is the commit: files are
published and verified first, then the metadata that points at them, then the manifest. So
every remote segment row and LeRobot episode names a file that is already there and verified,
and a file is *committed* exactly when the manifest lists it.

Remote metadata is produced from the local root (:func:`remote_metadata`): the segment table
keeps its rows in commit order (files in manifest order, each file's rows by first frame) split
into parts of ``ROWS_PER_PART`` rows, so a commit rewrites only the last part or two; LeRobot's
files follow, info.json last. Each object is uploaded only when its bytes changed.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from robovid.layout import (
    existing_segments_dir,
    info_json_path,
    lerobot_episodes_files,
    manifest_path,
    segment_part_path,
    stats_json_path,
    tasks_path,
)
from robovid.metadata import ROWS_PER_PART, SEGMENT_SCHEMA, read_segments

from .lerobot_snapshot import held_files, lerobot_snapshot, owns

MANIFEST_KEY = manifest_path(Path()).as_posix()
FORMAT = "robovid-ship-manifest"
VERSION = 1


@dataclass(frozen=True)
class ShippedFile:
    """A chunk file in the manifest."""

    key: str
    camera: str
    chunk_index: int
    file_index: int
    size_bytes: int
    sha256: str
    committed_at: float


@dataclass(frozen=True)
class ShippedObject:
    """A metadata object in the manifest."""

    key: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The committed content of one robot's prefix."""

    robot_id: str
    generation: int = 0
    """Incremented by every commit."""
    updated_at: float = 0.0
    files: dict[str, ShippedFile] = field(default_factory=dict)
    """By key, in commit order."""
    metadata: dict[str, ShippedObject] = field(default_factory=dict)
    lerobot_episodes: int = 0
    """M of the committed LeRobot snapshot: its episodes 0..M-1 (0: none shipped, or no LeRobot dataset)."""

    def with_files(self, new: Sequence[ShippedFile]) -> Manifest:
        files = dict(self.files)
        for entry in new:
            files[entry.key] = entry
        return replace(self, files=files)

    def committed(self, key: str, sha256: str) -> bool:
        entry = self.files.get(key)
        return entry is not None and entry.sha256 == sha256

    def to_json(self) -> bytes:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "robot_id": self.robot_id,
            "generation": self.generation,
            "updated_at": self.updated_at,
            "files": [asdict(f) for f in self.files.values()],
            "metadata": [asdict(m) for m in self.metadata.values()],
            "lerobot_episodes": self.lerobot_episodes,
        }
        return json.dumps(data, indent=1, ensure_ascii=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse a manifest; ValueError saying what is wrong."""
        try:
            raw: dict[str, Any] = json.loads(data)
            if raw.get("format") != FORMAT:
                raise ValueError(f"not a robovid ship manifest (format {raw.get('format')!r})")
            if raw.get("version") != VERSION:
                raise ValueError(f"manifest version {raw.get('version')!r}; this robovid reads version {VERSION}")
            files = [ShippedFile(**f) for f in raw["files"]]
            objects = [ShippedObject(**m) for m in raw["metadata"]]
            return cls(
                robot_id=str(raw["robot_id"]),
                generation=int(raw["generation"]),
                updated_at=float(raw["updated_at"]),
                files={f.key: f for f in files},
                metadata={m.key: m for m in objects},
                lerobot_episodes=int(raw.get("lerobot_episodes", 0)),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"damaged manifest ({type(error).__name__}: {error})") from error


def segment_parts(rows: Sequence[Mapping[str, Any]], files: Sequence[ShippedFile]) -> dict[str, bytes]:
    """The segment rows of the committed files, in commit order, as Parquet parts."""
    rows_by_file: dict[tuple[str, int, int], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        rows_by_file[(row["video_key"], row["chunk_index"], row["file_index"])].append(row)
    ordered: list[Mapping[str, Any]] = []
    for entry in files:
        found = rows_by_file.get((entry.camera, entry.chunk_index, entry.file_index), [])
        ordered += sorted(found, key=lambda r: r["first_frame"])
    parts = {}
    for number, start in enumerate(range(0, len(ordered), ROWS_PER_PART)):
        table = pa.Table.from_pylist(list(ordered[start : start + ROWS_PER_PART]), schema=SEGMENT_SCHEMA)
        parts[segment_part_path(Path(), number).as_posix()] = _parquet_bytes(table)
    return parts


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


@dataclass(frozen=True)
class RemoteMetadata:
    """What one commit writes besides the files, and what it leaves uncovered."""

    objects: dict[str, bytes]
    """Metadata objects by key, in upload order (LeRobot's info.json last)."""
    kept: dict[str, ShippedObject]
    """Committed LeRobot objects kept as they are (the local dataset covers fewer episodes than the remote)."""
    lerobot_episodes: int
    held: set[str]
    """Committed chunk files the remote LeRobot metadata does not cover yet: retention keeps them."""


def remote_metadata(root: Path, files: Sequence[ShippedFile], committed: Manifest) -> RemoteMetadata:
    """Every remote metadata object for these committed files, by key, in upload order."""
    rows = read_segments(root).to_pylist()
    objects = segment_parts(rows, files)
    snapshot = lerobot_snapshot(root, {f.key for f in files})
    if snapshot is not None and snapshot.episodes < committed.lerobot_episodes:
        # never shrink the remote dataset (an episodes file LeRobot reopened, a local meta/ rewritten):
        # the committed snapshot stays until the local one covers at least as many episodes
        kept = {k: m for k, m in committed.metadata.items() if owns(k)}
        episodes = committed.lerobot_episodes
        return RemoteMetadata(objects, kept, episodes, held_files(rows, episodes))
    if snapshot is None and committed.lerobot_episodes:
        kept = {k: m for k, m in committed.metadata.items() if owns(k)}
        return RemoteMetadata(objects, kept, committed.lerobot_episodes, set())
    objects |= snapshot.objects if snapshot is not None else {}
    episodes = snapshot.episodes if snapshot is not None else 0
    held = held_files(rows, episodes) if snapshot is not None else set()
    return RemoteMetadata(objects, {}, episodes, held)


def metadata_stamp(root: Path) -> tuple[tuple[str, int, int, int], ...]:
    """Identity of every local file remote metadata is made from: it changes when any of them does."""
    paths = sorted(existing_segments_dir(root).glob("part-*.parquet"))
    paths += [info_json_path(root), stats_json_path(root), tasks_path(root), *lerobot_episodes_files(root)]
    paths += sorted(Path(root).glob("data/chunk-*/file-*.parquet"))
    stamp = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        stamp.append((str(path), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(stamp)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
