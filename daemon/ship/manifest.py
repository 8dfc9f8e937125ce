"""What a robot's prefix at the destination holds, and the remote metadata that points at it.

The remote prefix is laid out like a local root, so a reader can treat it as one::

    {dest}/{robot}/videos/{camera}/chunk-XXX/file-YYY.mp4        finished chunk files, immutable
    {dest}/{robot}/meta/robovid/segments/part-NNNNNN.parquet     segment rows of shipped files only
    {dest}/{robot}/meta/robovid/manifest.json                    the commit point, written last

The **manifest** lists every shipped file with its size and SHA-256 (and every metadata
object with its own), in the order they were committed. Writing it is the commit: files are
published and verified first, then the metadata that points at them, then the manifest. So
every remote segment row names a file that is already there and verified, and a file is
*committed* exactly when the manifest lists it.

Remote metadata is produced from the local root by :data:`PRODUCERS`: functions from (local
root, committed files in order) to ``{key: bytes}``. Each object is uploaded only when its
bytes changed. The segment table keeps its rows in commit order (files in manifest order,
each file's rows by first frame) and splits them into parts of ``ROWS_PER_PART`` rows, so a
commit rewrites only the last part or two. LeRobot's ``meta/`` (issue 9) adds its producer
here: ``meta/info.json``, ``meta/episodes/...`` with the episodes whose every camera is
shipped.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from robovid.layout import manifest_path, segment_part_path
from robovid.metadata import ROWS_PER_PART, SEGMENT_SCHEMA, read_segments

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
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"damaged manifest ({type(error).__name__}: {error})") from error


MetadataProducer = Callable[[Path, Sequence[ShippedFile]], dict[str, bytes]]


def segment_parts(root: Path, files: Sequence[ShippedFile]) -> dict[str, bytes]:
    """The segment rows of the committed files, in commit order, as Parquet parts."""
    rows_by_file: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for row in read_segments(root).to_pylist():
        rows_by_file[(row["video_key"], row["chunk_index"], row["file_index"])].append(row)
    ordered: list[dict[str, Any]] = []
    for entry in files:
        rows = rows_by_file.get((entry.camera, entry.chunk_index, entry.file_index), [])
        ordered += sorted(rows, key=lambda r: r["first_frame"])
    parts = {}
    for number, start in enumerate(range(0, len(ordered), ROWS_PER_PART)):
        table = pa.Table.from_pylist(ordered[start : start + ROWS_PER_PART], schema=SEGMENT_SCHEMA)
        parts[segment_part_path(Path(), number).as_posix()] = _parquet_bytes(table)
    return parts


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


PRODUCERS: tuple[MetadataProducer, ...] = (segment_parts,)
"""Every remote metadata producer; LeRobot's ``meta/`` joins here."""


def remote_metadata(root: Path, files: Sequence[ShippedFile]) -> dict[str, bytes]:
    """Every remote metadata object for these committed files, by key."""
    out: dict[str, bytes] = {}
    for produce in PRODUCERS:
        out.update(produce(root, files))
    return out


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
