"""Roots and videos wherever they are: a local folder, or an fsspec URL (``s3://``, ``gs://``, ``file://``).

Everything that reads a root (:func:`robovid.read_segments`, :func:`robovid.read_lerobot_episodes`,
:func:`robovid.decode_episode_frames`, ``robovid verify``) takes either. A URL root has the
layout of a local one (:mod:`robovid.layout`): what ``robovid-ship`` uploads under a robot's
prefix is one. Credentials come from the store's usual mechanisms (environment, config files).

**Range reads.** A remote video is opened with a block cache (:func:`open_video_file`): a decode
fetches the blocks of :data:`REMOTE_BLOCK_BYTES` it touches (the movie box at the end, the
wanted frames' group of pictures), never the whole file, and keeps at most
:data:`REMOTE_MAX_BLOCKS` of them per open file. A file appended in place carries one dead movie
box and one ``mdat`` per append, which FFmpeg walks header by header to reach the live ``moov``:
:mod:`robovid._remote_layout` serves that walk from memory, so a first frame costs about three
requests whether the file was compacted or not.

**Change-aware.** :func:`file_identity` is what the store says about the object now (ETag, size,
modification time), read with fsspec's listing cache dropped for that path, so the decoder cache
(:class:`robovid.VideoDecoderCache`) reopens an object rewritten since it was opened, and the
segment table's parts are read again only when they changed.

A store's own errors (botocore's, aiohttp's: not OSErrors) become :class:`robovid.errors.RemoteError`
(:func:`store_errors`), the one error type for a store that failed, shared with robovid-ship.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from robovid._remote_layout import overlay
from robovid.errors import MetadataError, RemoteError, RobovidError
from robovid.layout import PART_RE, chunk_path, legacy_segments_dir, segments_dir

if TYPE_CHECKING:
    import pyarrow as pa  # loaded by the segment readers only, not with the decoders

REMOTE_BLOCK_BYTES = 1 << 20
"""Bytes fetched per range request of a remote video (benchmarks/bench_remote.py measures the latency)."""
REMOTE_MAX_BLOCKS = 8
"""Blocks kept per open remote video: at most 8 MiB of memory for each cached decoder."""
_IDENTITY_KEYS = ("size", "mtime", "LastModified", "last_modified", "ETag", "etag", "ino")
_PART_CACHE_SIZE = 1024
"""Segment table parts kept in memory, by URL and identity (256 rows each)."""

FileIdentity = tuple[Any, ...]


def is_url(location: Path | str) -> bool:
    """True for a URL fsspec must open (``s3://…``, ``file://…``), False for a plain path."""
    return not isinstance(location, Path) and fsspec.core.split_protocol(location)[0] is not None


def join(root: str, relative: Path | str) -> str:
    """``root`` (a URL) and a relative path, joined with exactly one ``/``."""
    return root.rstrip("/") + "/" + Path(relative).as_posix().lstrip("/")


def as_root(location: Path | str) -> Path | str:
    """A root as the readers take it: a URL stays a string (``Path`` would fold its ``//``), anything else a Path."""
    return str(location) if is_url(location) else Path(location)


def chunk_location(root: Path | str, camera: str, chunk_index: int, file_index: int) -> Path | str:
    """A camera's chunk file under ``root``: a Path under a local root, a URL under a remote one."""
    if is_url(root):
        return join(str(root), chunk_path(Path(), camera, chunk_index, file_index))
    return chunk_path(Path(root), camera, chunk_index, file_index)


def file_identity(url: str) -> FileIdentity:
    """What tells this version of the object from a rewritten one (ETag, size, mtime, as the store says now)."""
    fs, path = fsspec.core.url_to_fs(url)
    with store_errors(url):
        return _identity(_fresh_info(fs, path))


def _fresh_info(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    fs.invalidate_cache(path)  # a listing fsspec cached earlier must not hide a rewrite (s3fs answers info() from it)
    info: dict[str, Any] = fs.info(path)
    return info


def _identity(info: dict[str, Any]) -> FileIdentity:
    return tuple((key, info[key]) for key in _IDENTITY_KEYS if key in info)


def open_video_file(url: str) -> tuple[IO[bytes], FileIdentity]:
    """Open a remote video for range reads, and its identity read before opening (a later rewrite shows as a change)."""
    fs, path = fsspec.core.url_to_fs(url)
    with store_errors(url):
        info = _fresh_info(fs, path)
        if isinstance(fs, LocalFileSystem):
            return fs.open(path, "rb"), _identity(info)
        options: dict[str, Any] = {
            "block_size": REMOTE_BLOCK_BYTES,
            "cache_type": "blockcache",
            "cache_options": {"maxblocks": REMOTE_MAX_BLOCKS},
        }
        try:
            handle = fs.open(path, "rb", size=info["size"], **options)  # no second metadata request
        except TypeError:  # a file system whose open() takes no size
            handle = fs.open(path, "rb", **options)
        return overlay(handle, int(info["size"]), url), _identity(info)


def read_bytes(url: str) -> bytes | None:
    """A small object's bytes (``meta/info.json``), None when it does not exist."""
    fs, path = fsspec.core.url_to_fs(url)
    with store_errors(url):
        fs.invalidate_cache(path)
        try:
            data: bytes = fs.cat_file(path)
        except FileNotFoundError:
            return None
    return data


def exists(location: Path | str) -> bool:
    """True when the file exists: a local path, or an object under a URL."""
    if not is_url(location):
        return Path(location).is_file()
    fs, path = fsspec.core.url_to_fs(str(location))
    with store_errors(location):
        fs.invalidate_cache(path)
        return bool(fs.isfile(path))


# --- the segment table of a remote root ----------------------------------------------------------

_parts_lock = threading.Lock()
_parts: OrderedDict[tuple[str, FileIdentity], pa.Table] = OrderedDict()


def read_remote_parts(root: str, schema: pa.Schema) -> list[pa.Table]:
    """The segment table's parts under a URL root, in order: one listing, then only parts that changed are read.

    The table is under :func:`robovid.layout.segments_dir` (what robovid-ship writes), or, for a
    prefix copied from a root of before the state move, under the legacy ``meta/robovid/segments``.
    """
    with store_errors(root):
        for directory in (segments_dir(Path()), legacy_segments_dir(Path())):
            tables = _read_listed_parts(join(root, directory), schema)
            if tables is not None:
                return tables
    return []


def _read_listed_parts(url: str, schema: pa.Schema) -> list[pa.Table] | None:
    fs, base = fsspec.core.url_to_fs(url)
    fs.invalidate_cache(base)
    try:
        listing = fs.ls(base, detail=True)
    except FileNotFoundError:
        return None
    numbered = []
    for entry in listing:
        match = PART_RE.fullmatch(str(entry["name"]).rstrip("/").rsplit("/", 1)[-1])
        if match and entry.get("type") != "directory":
            numbered.append((int(match.group(1)), entry))
    if not numbered:
        return None
    return [_read_part(fs, str(entry["name"]), _identity(entry), schema) for _, entry in sorted(numbered)]


def _read_part(fs: fsspec.AbstractFileSystem, path: str, identity: FileIdentity, schema: pa.Schema) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    url = fs.unstrip_protocol(path)
    with _parts_lock:
        cached = _parts.get((url, identity))
        if cached is not None:
            _parts.move_to_end((url, identity))
            return cached
    try:
        table = pq.read_table(pa.BufferReader(fs.cat_file(path)), schema=schema)
    except (OSError, pa.ArrowException) as error:
        raise MetadataError(
            f"{url}: segment metadata is unreadable ({error}). Ship it again from the robot (robovid-ship rewrites "
            "its metadata), or check the store."
        ) from error
    with _parts_lock:
        _parts[(url, identity)] = table
        while len(_parts) > _PART_CACHE_SIZE:
            _parts.popitem(last=False)
    return table


@contextlib.contextmanager
def store_errors(location: Path | str) -> Iterator[None]:
    """A remote store's own errors (botocore's, aiohttp's: whatever its client raises) as :class:`RemoteError`.

    robovid's errors and OSErrors (fsspec turns many answers into FileNotFoundError or
    PermissionError) pass unchanged, and so does everything for a local path.
    """
    try:
        yield
    except (RobovidError, OSError):
        raise
    except Exception as error:
        if not is_url(location):
            raise
        raise RemoteError(
            f"{location}: the store failed the request ({type(error).__name__}: {error}). Is it reachable, and are "
            "the credentials right? Try again once it is."
        ) from error
