"""Finished chunk files: the service's durable promise never to write a file again.

A chunk file is **finished** when the service has *sealed* it: written, durably, a seal
record ``{root}/.robovid/sealed/{camera id}--{chunk:03d}-{file:03d}.json`` naming the camera,
the file's location and its size. Only the service seals, while it holds the root lock, and
only a file it is not appending to:

- when it starts a camera's next file: the one it finished is compacted first (if needed),
  then sealed, then the new file is created;
- when it skips a file it cannot append to (another codec or size, a damaged file);
- at start, after recovery: every chunk file that is not its camera's last (roots older
  than sealing, or a crash between a seal and the next file);
- when a camera's current file has not grown for ``ROBOVID_SEAL_IDLE_S``, so a robot that
  records little still ships its recordings.

After the seal the service never opens the file for writing again (no append, no compaction,
no recovery): a new episode goes to a location after every existing *and every sealed* one.
The shipper (:mod:`robovid_watch.ship`) ships only sealed files and deletes only sealed files
whose remote copy is verified and committed. Seal records are never deleted: they remember
each file name used, so a name is not reused after the shipper pruned the local copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robovid.durable import is_temp_path, make_dirs_durably, write_bytes_durably
from robovid.layout import ChunkLocation, chunk_key, chunk_path, list_cameras, list_chunks, sealed_dir

from .state import camera_id


class ChunkFileRecord:
    """A record of one chunk file, named by its camera, chunk and file index: where the file lies."""

    camera: str
    chunk_index: int
    file_index: int

    @property
    def location(self) -> ChunkLocation:
        return ChunkLocation(self.chunk_index, self.file_index)

    def path(self, root: Path) -> Path:
        return chunk_path(root, self.camera, self.chunk_index, self.file_index)

    def relative_key(self) -> str:
        """The file's path under a root, with ``/`` separators (also its key under a remote prefix)."""
        return chunk_key(self.camera, self.location)


@dataclass(frozen=True)
class SealedFile(ChunkFileRecord):
    """One finished chunk file, as the service sealed it."""

    camera: str
    chunk_index: int
    file_index: int
    size_bytes: int
    """The file's size when it was sealed; it never changes after."""
    sealed_at: float
    """Unix time of the seal."""
    reason: str
    """``rollover``, ``skipped``, ``start`` or ``idle``."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SealedFile:
        raw: dict[str, Any] = json.loads(data)
        return cls(
            camera=str(raw["camera"]),
            chunk_index=int(raw["chunk_index"]),
            file_index=int(raw["file_index"]),
            size_bytes=int(raw["size_bytes"]),
            sealed_at=float(raw["sealed_at"]),
            reason=str(raw["reason"]),
        )


def record_name(camera: str, location: ChunkLocation) -> str:
    """The file name of a record about one chunk file (a seal here, robovid-ship's journal record)."""
    return f"{camera_id(camera)}--{location.chunk_index:03d}-{location.file_index:03d}.json"


def _record_path(root: Path, camera: str, location: ChunkLocation) -> Path:
    return sealed_dir(root) / record_name(camera, location)


def seal(root: Path, camera: str, location: ChunkLocation, reason: str) -> SealedFile:
    """Record, durably, that the service will never write this chunk file again.

    The caller is the service, holding the root lock and the camera's lock, with no journal
    intent on the file. Sealing a file twice keeps the first record.
    """
    existing = read_seal(root, camera, location)
    if existing is not None:
        return existing
    size = location.path(root, camera).stat().st_size
    record = SealedFile(camera, location.chunk_index, location.file_index, size, time.time(), reason)
    make_dirs_durably(sealed_dir(root))
    write_bytes_durably(_record_path(root, camera, location), record.to_json())
    return record


def read_seal(root: Path, camera: str, location: ChunkLocation) -> SealedFile | None:
    """The seal record of one file, or None when it is not sealed."""
    try:
        return SealedFile.from_json(_record_path(root, camera, location).read_bytes())
    except FileNotFoundError:
        return None


def sealed_files(root: Path) -> list[SealedFile]:
    """Every sealed file of the root, oldest seal first (unreadable records are skipped)."""
    found: list[SealedFile] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(sealed_dir(root)):
            if not entry.name.endswith(".json") or is_temp_path(Path(entry.path)):
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                found.append(SealedFile.from_json(Path(entry.path).read_bytes()))
    return sorted(found, key=lambda s: (s.sealed_at, s.camera, s.location))


def last_sealed(root: Path, camera: str) -> ChunkLocation | None:
    """The highest sealed location of a camera (the service's next file comes after it)."""
    locations = [s.location for s in sealed_files(root) if s.camera == camera]
    return max(locations) if locations else None


def last_location(root: Path, camera: str) -> ChunkLocation | None:
    """The camera's highest location in use: its last chunk file, or a later sealed one (pruned since)."""
    existing = list_chunks(root, camera)
    candidates = [*existing[-1:], *filter(None, [last_sealed(root, camera)])]
    return max(candidates) if candidates else None


def unsealed_before_last(root: Path) -> list[tuple[str, ChunkLocation]]:
    """Every chunk file that is not its camera's last and has no seal yet (to be sealed at start)."""
    found = []
    for camera in list_cameras(root):
        for location in list_chunks(root, camera)[:-1]:
            if read_seal(root, camera, location) is None:
                found.append((camera, location))
    return found


def idle_last_files(root: Path, idle_s: float, now: float) -> list[tuple[str, ChunkLocation]]:
    """Each camera's last file when it is unsealed and has not changed for ``idle_s`` seconds."""
    found = []
    for camera in list_cameras(root):
        chunks = list_chunks(root, camera)
        if not chunks or read_seal(root, camera, chunks[-1]) is not None:
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - chunks[-1].path(root, camera).stat().st_mtime >= idle_s:
                found.append((camera, chunks[-1]))
    return found
