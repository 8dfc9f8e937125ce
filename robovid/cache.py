"""A bounded, thread-safe LRU of torchcodec ``VideoDecoder`` objects, keyed by path.

Opening a decoder costs a file open and a header parse, so decoders are kept, up to
``max_size`` of them; the least recently used one is dropped and its file closed.
Each get checks that the file is still the one that was opened (inode, size and
mtime; for fsspec URLs the size, mtime and ETag the store reports now, :mod:`robovid.remote`): robovid
appends episodes to chunk files in place, and a decoder opened before an append would
not see the new frames. A changed file is reopened.

torchcodec (and so torch) is imported on the first get, never at ``import robovid``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from robovid._decode_common import is_local_path
from robovid.errors import BackendUnavailableError, VideoFormatError
from robovid.remote import FileIdentity, file_identity, open_video_file

if TYPE_CHECKING:
    from torchcodec.decoders import VideoDecoder

DEFAULT_MAX_SIZE = 100
"""LeRobot's default. Measured (benchmarks/README.md, ``bench_cache_memory``): 100 cached decoders hold
~140 MB of RSS for 640x480 AV1 chunks of 6000 frames and ~260 MB at 1280x720, per process (each
DataLoader worker has its own cache)."""
CACHE_SIZE_VARIABLES = ("ROBOVID_VIDEO_DECODER_CACHE_SIZE", "LEROBOT_VIDEO_DECODER_CACHE_SIZE")
"""Where a cache built without ``max_size`` reads its size, first found wins (LeRobot's name works too)."""
_DEFAULT: Any = object()


def load_video_decoder_class() -> type[VideoDecoder]:
    """Import torchcodec's ``VideoDecoder``, or raise :class:`BackendUnavailableError` saying what to install."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as error:  # ImportError, or OSError/RuntimeError when FFmpeg's libraries are missing
        raise BackendUnavailableError(
            f"The torchcodec backend cannot be loaded ({type(error).__name__}: {error}). "
            "Install it with `pip install 'robovid[decode]'` (torch==2.13.0, torchcodec==0.13) and FFmpeg's "
            "shared libraries (`apt-get install ffmpeg`), or decode with backend='pyav', which needs neither."
        ) from error
    return VideoDecoder


def _file_identity(video_path: str) -> FileIdentity:
    """What distinguishes this version of the file from a rewritten or appended one."""
    if is_local_path(video_path):
        return _stat_identity(os.stat(video_path))
    return file_identity(video_path)  # the store's answer now, not fsspec's cached listing


def _stat_identity(st: os.stat_result) -> FileIdentity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _open_handle(video_path: str) -> tuple[IO[bytes], FileIdentity]:
    """Open the file; its identity is taken from the open handle where the OS allows (no race)."""
    if is_local_path(video_path):
        handle = open(video_path, "rb")  # noqa: SIM115 -- kept open by the cache entry, closed on eviction
        return handle, _stat_identity(os.fstat(handle.fileno()))
    return open_video_file(video_path)  # range reads; identity read before opening: a later rewrite shows


@dataclass(eq=False)
class _Entry:
    """One open file and its decoder. ``lock`` serialises decoding; ``users`` counts borrowers."""

    decoder: VideoDecoder
    handle: IO[bytes]
    identity: FileIdentity
    lock: threading.Lock
    users: int = 0
    evicted: bool = False


def _open_entry(video_path: str, decoder_class: type[VideoDecoder]) -> _Entry:
    """Open ``video_path`` and build its decoder; on failure close the file and raise ``VideoFormatError``."""
    handle, identity = _open_handle(video_path)
    try:
        decoder = decoder_class(cast(Any, handle), seek_mode="approximate")  # any object with read() and seek()
    except Exception as error:
        handle.close()
        raise VideoFormatError(
            f"{video_path}: torchcodec cannot open it as a video ({error}). "
            "Is it a complete video file? Check it with `ffprobe`, or re-encode it."
        ) from error
    return _Entry(decoder, handle, identity, threading.Lock())


def default_max_size() -> int:
    """The cache size from ``ROBOVID_VIDEO_DECODER_CACHE_SIZE`` (or LeRobot's variable), else :data:`DEFAULT_MAX_SIZE`."""
    for name in CACHE_SIZE_VARIABLES:
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        size = _whole_number(raw)
        if size is None or size < 1:
            raise ValueError(
                f"{name}={raw!r}: the decoder cache size must be a whole number of decoders, 1 or more "
                f"(default {DEFAULT_MAX_SIZE}). robovid's cache is always bounded: 'none' or -1 are refused."
            )
        return size
    return DEFAULT_MAX_SIZE


def _whole_number(text: str) -> int | None:
    """``int(text)`` ('+5', '1_000' too), or None for text that is not a whole number."""
    try:
        return int(text)
    except ValueError:
        return None


class VideoDecoderCache:
    """Thread-safe LRU cache of torchcodec decoders (``seek_mode="approximate"``), at most ``max_size`` open.

    ``max_size`` defaults to :func:`default_max_size` (an environment variable, else 100); it
    is always bounded (``None`` raises ValueError). A decoder from :meth:`get_decoder` stays
    usable until it is evicted or its file changes; use :meth:`borrow_decoder` to decode from
    several threads safely. ``path in cache`` tells whether a decoder for ``path`` is held.
    """

    def __init__(self, max_size: int | None = _DEFAULT) -> None:
        if max_size is _DEFAULT:
            max_size = default_max_size()
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(
                f"max_size={max_size!r}: a VideoDecoderCache must hold at least 1 decoder, and is always bounded "
                f"(an unbounded cache grows with every file read; default {DEFAULT_MAX_SIZE})."
            )
        self._max_size = max_size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        # A cache dropped without clear() still closes its files (the callback must not hold self).
        weakref.finalize(self, _close_entries, self._entries)

    @property
    def max_size(self) -> int:
        """How many decoders the cache keeps open at most."""
        return self._max_size

    def get_decoder(self, video_path: Path | str) -> VideoDecoder:
        """The decoder of ``video_path``, opened now or reused if the file has not changed since."""
        return self._fresh_entry(str(video_path), borrow=False).decoder

    @contextmanager
    def borrow_decoder(self, video_path: Path | str) -> Iterator[VideoDecoder]:
        """Like :meth:`get_decoder`, but the decoder is this thread's alone and stays open until the block ends."""
        entry = self._fresh_entry(str(video_path), borrow=True)
        try:
            with entry.lock:
                yield entry.decoder
        finally:
            self._give_back(entry)

    def clear(self) -> None:
        """Drop every decoder and close its file (a borrowed one when it is given back)."""
        with self._lock:
            closable = [entry for entry in self._entries.values() if self._evict(entry)]
            self._entries.clear()
        _close_all(closable)

    def size(self) -> int:
        """The number of decoders held."""
        with self._lock:
            return len(self._entries)

    def __len__(self) -> int:
        return self.size()

    def __contains__(self, video_path: object) -> bool:
        with self._lock:
            return str(video_path) in self._entries

    def _fresh_entry(self, key: str, borrow: bool) -> _Entry:
        """The cached entry if its file is unchanged, else a newly opened one (evicting to stay bounded)."""
        decoder_class = load_video_decoder_class()
        try:
            identity = _file_identity(key)
        except FileNotFoundError:
            self._forget(key)
            raise
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.identity == identity:
                return self._use(key, entry, borrow)
        return self._insert(key, _open_entry(key, decoder_class), borrow)

    def _insert(self, key: str, new: _Entry, borrow: bool) -> _Entry:
        """Store ``new`` unless another thread just stored the same file version; evict what no longer fits."""
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current.identity == new.identity:
                closable, entry = [new], self._use(key, current, borrow)
            else:
                closable = [current] if current is not None and self._evict(current) else []
                self._entries[key] = new
                entry = self._use(key, new, borrow)
                while len(self._entries) > self._max_size:
                    _, oldest = self._entries.popitem(last=False)
                    if self._evict(oldest):
                        closable.append(oldest)
        _close_all(closable)
        return entry

    def _use(self, key: str, entry: _Entry, borrow: bool) -> _Entry:
        """Mark ``entry`` most recently used (and borrowed); call with the lock held."""
        self._entries.move_to_end(key)
        if borrow:
            entry.users += 1
        return entry

    def _give_back(self, entry: _Entry) -> None:
        with self._lock:
            entry.users -= 1
            close_now = entry.evicted and entry.users == 0
        if close_now:
            entry.handle.close()

    def _forget(self, key: str) -> None:
        """Drop the entry of a file that no longer exists."""
        with self._lock:
            entry = self._entries.pop(key, None)
            closable = [entry] if entry is not None and self._evict(entry) else []
        _close_all(closable)

    @staticmethod
    def _evict(entry: _Entry) -> bool:
        """Mark ``entry`` evicted; True if nobody borrows it, so it can be closed now. Lock held."""
        entry.evicted = True
        return entry.users == 0


def _close_all(entries: list[_Entry]) -> None:
    for entry in entries:
        entry.handle.close()


def _close_entries(entries: OrderedDict[str, _Entry]) -> None:
    _close_all(list(entries.values()))
