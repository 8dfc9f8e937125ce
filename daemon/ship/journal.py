"""The shipper's own state under ``{root}/.robovid/ship/``: its lock and one record per sealed file.

A record follows its file through ``hashed`` (size, SHA-256 and identity of the local file
known) → ``published`` (the remote object exists at its final key and read back to that
hash) → ``committed`` (the remote manifest lists it, and remote metadata points at it) →
``pruned`` (the local copy was deleted after one more remote check). Each step is written
durably (temp file, fsync, rename) *after* it happened, so a kill between a step and its
record only repeats that step, and every step is idempotent: uploads go to one temp key per
file, publishing overwrites the same final key with the same bytes, the manifest is keyed by
file. The remote manifest is the truth for ``committed``; this journal is what lets the
shipper work (and report) while the store is out of reach.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from robovid.durable import is_temp_path, make_dirs_durably, unlink_durably, write_bytes_durably
from robovid.layout import ChunkLocation, ship_dir, ship_records_dir

from ..errors import RootLockedError
from ..finished import ChunkFileRecord, SealedFile, record_name
from ..stop_signals import StopRequest

STATES = ("hashed", "published", "committed", "pruned")
HASH_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class ShipRecord(ChunkFileRecord):
    """What the shipper knows about one sealed chunk file."""

    camera: str
    chunk_index: int
    file_index: int
    size_bytes: int
    sha256: str
    """Hex SHA-256 of the local file, computed once after the seal."""
    mtime_ns: int
    inode: int
    """Identity of the hashed local file: a file that changes after (a hand-run compaction) is hashed again."""
    sealed_at: float
    state: str = "hashed"
    verified_at: float = 0.0
    """Unix time of the last full read-back of the remote object that matched ``sha256``."""
    committed_at: float = 0.0
    pruned_at: float = 0.0

    @classmethod
    def hash_file(cls, sealed: SealedFile, path: Path, stop: StopRequest) -> ShipRecord:
        """A new ``hashed`` record for a sealed file: its SHA-256, size and identity, read in one pass."""
        digest = hashlib.sha256()
        with open(path, "rb") as source:
            st = os.fstat(source.fileno())
            while block := source.read(HASH_BLOCK):
                if stop.is_set():
                    raise InterruptedError("stop requested while hashing")
                digest.update(block)
        return cls(
            camera=sealed.camera,
            chunk_index=sealed.chunk_index,
            file_index=sealed.file_index,
            size_bytes=st.st_size,
            sha256=digest.hexdigest(),
            mtime_ns=st.st_mtime_ns,
            inode=st.st_ino,
            sealed_at=sealed.sealed_at,
        )

    def moved_to(self, state: str, **changes: Any) -> ShipRecord:
        if state not in STATES:
            raise ValueError(f"unknown ship state {state!r}; expected one of {STATES}")
        return replace(self, state=state, **changes)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ShipRecord:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("state") not in STATES:
            raise ValueError("not a ship record")
        fields = cls.__dataclass_fields__
        return cls(**{name: raw[name] for name in fields if name in raw})


class ShipJournal:
    """Records and lock of the shipper for one root. One shipper per root holds the lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = ship_dir(root)
        self.files_dir = ship_records_dir(root)
        self._lock_fd: int | None = None

    def prepare(self) -> None:
        make_dirs_durably(self.files_dir)

    def clear_temp_files(self) -> int:
        """Remove the temp files a killed shipper left in its journal (call with the lock held)."""
        leftovers = [Path(e.path) for e in os.scandir(self.files_dir) if is_temp_path(Path(e.path))]
        unlink_durably(leftovers)
        return len(leftovers)

    def acquire_lock(self) -> None:
        """Take the shipper's lock on this root, or raise RootLockedError naming the holder.

        The lock is an ``flock`` on the journal's directory, held through a descriptor kept
        open: deleting a lock file cannot release it. A journal directory deleted and made
        again under a running shipper is noticed by :meth:`still_held`.
        """
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                holder = _read_text(self.dir / "pid") or "unknown"
                raise RootLockedError(
                    f"Another robovid-ship (pid {holder}) is shipping {self.root}. Stop it first "
                    "(systemctl stop robovid-ship)."
                ) from error
            raise
        self._lock_fd = fd
        write_bytes_durably(self.dir / "pid", str(os.getpid()).encode())

    def still_held(self) -> bool:
        """False when the locked journal directory is no longer the one at its path (deleted, replaced)."""
        if self._lock_fd is None:
            return False
        held = os.fstat(self._lock_fd)
        try:
            current = os.stat(self.dir)
        except FileNotFoundError:
            return False
        return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _path(self, camera: str, location: ChunkLocation) -> Path:
        return self.files_dir / record_name(camera, location)

    def write(self, record: ShipRecord) -> ShipRecord:
        write_bytes_durably(self._path(record.camera, record.location), record.to_json())
        return record

    def get(self, camera: str, location: ChunkLocation) -> ShipRecord | None:
        try:
            return ShipRecord.from_json(self._path(camera, location).read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None  # a damaged record: the file is hashed again and checked against the remote

    def records(self) -> list[ShipRecord]:
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.files_dir):
                if entry.name.endswith(".json") and not is_temp_path(Path(entry.path)):
                    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                        found.append(ShipRecord.from_json(Path(entry.path).read_bytes()))
        return sorted(found, key=lambda r: (r.sealed_at, r.camera, r.location))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""
