"""The destination: an fsspec filesystem under this robot's prefix, written so that nothing is half-visible.

Every object is written the same way, whatever the store:

1. streamed to a temp key ``{prefix}/.robovid-incoming/{key}`` (one per final key, so a
   retry overwrites it instead of adding another), hashing the bytes as they are sent;
2. moved to its final key: a rename on a file system (``file://``, atomic), a server-side
   copy on object stores (S3 has no rename; a PUT or a completed multipart upload is atomic,
   so the final key holds a whole object or none);
3. verified: the final object's size, then its bytes read back and hashed (SHA-256) against
   the hash of the local file.

What S3 gives and does not give: a single PUT or a completed multipart upload appears whole or
not at all, and reads after a write are consistent; but a multipart upload cut off by a kill
stays, invisible and billed, until aborted. :meth:`RemoteStore.abort_stale_uploads` aborts
those under this robot's prefix at start (a bucket lifecycle rule
``AbortIncompleteMultipartUpload`` is the belt to those braces).

Every method raises :class:`RemoteError` (or :class:`RemoteMismatchError`) for anything the
store did or refused; the caller backs off and tries again later. Local files are only read.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import structlog
from fsspec.spec import AbstractBufferedFile

from robovid._faults import fault_point

from ..errors import RemoteError, RemoteMismatchError
from ..stop_signals import StopRequest

log = structlog.get_logger("robovid_ship")

INCOMING = ".robovid-incoming"
READ_BLOCK = 8 * 1024 * 1024
LOCAL_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class RemoteCheck:
    """The outcome of reading a remote object back."""

    exists: bool
    size_bytes: int = 0
    sha256: str = ""


class RemoteStore:
    """One robot's prefix at the destination."""

    def __init__(self, dest: str, robot_id: str, storage_options: dict[str, Any], part_bytes: int) -> None:
        self.url = f"{dest}/{robot_id}"
        self.fs, self.prefix = fsspec.core.url_to_fs(self.url, **storage_options)
        self.prefix = self.prefix.rstrip("/")
        self.part_bytes = part_bytes
        self.is_local = "file" in _protocols(self.fs)
        self.is_s3 = "s3" in _protocols(self.fs)
        if hasattr(self.fs, "connect"):
            self.fs.connect()  # s3fs: builds its client now (no request), so a bad option fails at start

    def path(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def temp_path(self, key: str) -> str:
        return f"{self.prefix}/{INCOMING}/{key}"

    # whole objects -------------------------------------------------------------------------
    def put_file(self, local: Path, key: str, expected_sha256: str, stop: StopRequest) -> None:
        """Upload ``local`` to ``key`` through its temp key, then verify the final object.

        Raises RemoteMismatchError if the bytes sent do not hash to ``expected_sha256`` (the
        local file changed) or the final object does not read back to it.
        """
        sent = self._call(self._stream_to_temp, local, key, stop)
        if sent != expected_sha256:
            self.discard_temp(key)
            raise RemoteMismatchError(f"{local}: its bytes no longer hash to the recorded SHA-256; hashing it again.")
        self._call(self._publish, key)
        fault_point("ship:after-publish")
        self.verify(key, local.stat().st_size, expected_sha256)

    def put_bytes(self, data: bytes, key: str) -> str:
        """Write ``data`` to ``key`` (temp key, then publish), verify it, return its SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        self._call(self._write_temp_bytes, data, key)
        self._call(self._publish, key)
        self.verify(key, len(data), digest)
        return digest

    def verify(self, key: str, size_bytes: int, sha256: str) -> None:
        """Read the final object back; RemoteMismatchError unless its size and SHA-256 match."""
        found = self.check(key, full=True)
        if not found.exists:
            raise RemoteMismatchError(f"{self.url}/{key} is missing.")
        if found.size_bytes != size_bytes or found.sha256 != sha256:
            raise RemoteMismatchError(
                f"{self.url}/{key} holds {found.size_bytes} bytes with SHA-256 {found.sha256[:16]}…, expected "
                f"{size_bytes} bytes with {sha256[:16]}…"
            )

    def check(self, key: str, full: bool) -> RemoteCheck:
        """Does ``key`` exist, its size and (with ``full``) the SHA-256 of its bytes as read back now."""
        return self._call(self._check, key, full)

    def read_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        return self._call(self._read_bytes, key)

    def remove(self, key: str) -> None:
        """Delete the object at ``key`` (gone already is fine)."""
        self._call(self._remove, key)

    def discard_temp(self, key: str) -> None:
        with contextlib.suppress(Exception):
            self.fs.rm(self.temp_path(key))

    def abort_stale_uploads(self) -> int:
        """Abort multipart uploads under this robot's prefix that a killed run left (S3 only); how many."""
        if not self.is_s3:
            return 0
        bucket, _, prefix = self.prefix.partition("/")

        def abort() -> int:
            uploads = self.fs.list_multipart_uploads(bucket)
            mine = [u for u in uploads if str(u.get("Key", "")).startswith(f"{prefix}/{INCOMING}/")]
            for upload in mine:
                self.fs.abort_mpu(bucket, upload["Key"], upload["UploadId"])
            return len(mine)

        return self._call(abort)

    # steps -------------------------------------------------------------------------------
    def _stream_to_temp(self, local: Path, key: str, stop: StopRequest) -> str:
        temp = self.temp_path(key)
        self._makedirs_for(temp)
        digest = hashlib.sha256()
        out = self.fs.open(temp, "wb", block_size=self.part_bytes)
        try:
            with open(local, "rb") as source:
                while block := source.read(LOCAL_BLOCK):
                    if stop.is_set():
                        raise InterruptedError("stop requested during an upload")
                    digest.update(block)
                    out.write(block)
                    fault_point("ship:upload-block")
            out.close()
        except BaseException:
            _discard(out)
            raise
        return digest.hexdigest()

    def _write_temp_bytes(self, data: bytes, key: str) -> None:
        temp = self.temp_path(key)
        self._makedirs_for(temp)
        self.fs.pipe_file(temp, data)

    def _publish(self, key: str) -> None:
        final = self.path(key)
        self._makedirs_for(final)
        fault_point("ship:before-publish")
        self.fs.mv(self.temp_path(key), final)
        self.fs.invalidate_cache(final)

    def _check(self, key: str, full: bool) -> RemoteCheck:
        path = self.path(key)
        self.fs.invalidate_cache(path)
        try:
            size = int(self.fs.info(path)["size"])
        except FileNotFoundError:
            return RemoteCheck(False)
        if not full:
            return RemoteCheck(True, size)
        digest = hashlib.sha256()
        read = 0
        with self.fs.open(path, "rb", block_size=READ_BLOCK, cache_type="none") as remote:
            while block := remote.read(READ_BLOCK):
                digest.update(block)
                read += len(block)
        return RemoteCheck(True, read, digest.hexdigest())

    def _read_bytes(self, key: str) -> bytes | None:
        path = self.path(key)
        self.fs.invalidate_cache(path)
        try:
            data: bytes = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        return data

    def _remove(self, key: str) -> None:
        path = self.path(key)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)
        self.fs.invalidate_cache(path)

    def _makedirs_for(self, path: str) -> None:
        if self.is_local:  # object stores have no folders; creating one could create a bucket
            self.fs.makedirs(self.fs._parent(path), exist_ok=True)

    def _call(self, func: Any, *args: Any) -> Any:
        """Run one store operation; anything the store raises becomes a RemoteError."""
        try:
            return func(*args)
        except (RemoteError, InterruptedError):
            raise
        except Exception as error:  # botocore, aiohttp, OSError (ENOSPC), PermissionError: all the store's
            raise RemoteError(f"{type(error).__name__}: {error}") from error


def _discard(out: Any) -> None:
    """Drop a half-written remote file without finishing it (S3: abort its multipart upload).

    fsspec's object-store files publish whatever they hold when closed, so they are discarded
    and marked closed instead; a local file is closed (only its temp name holds the bytes).
    """
    if isinstance(out, AbstractBufferedFile):
        with contextlib.suppress(Exception):
            out.discard()
        out.closed = True
        return
    with contextlib.suppress(Exception):
        out.close()


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)
