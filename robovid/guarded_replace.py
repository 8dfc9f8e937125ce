"""Replace a file that another program also writes, without ever losing that program's write.

LeRobot writes ``meta/info.json`` by opening it for writing (truncate, then write) and
``meta/episodes/*.parquet`` through a ``ParquetWriter``; it takes no lock robovid could share.
robovid adds its own keys and columns to those files. :func:`replace_if_unchanged` publishes
robovid's version only if the file is still the one robovid read, and makes sure a write the
other program made meanwhile is never lost:

1. the new content goes to a temp file beside the target, which is fsynced;
2. just before the rename, the target must still be the same inode with the same size and
   mtime as when it was read (else: nothing is replaced, the caller reads again later);
3. ``os.replace`` publishes it, and the directory is fsynced;
4. ``settle_s`` later, the *old* inode (still open) must be unchanged. A writer that opened
   the file between step 2 and step 3 wrote into the old inode, which nobody would read again:
   its content is then put back (atomically, and only if the target still holds robovid's
   version), so the other program's latest write wins and robovid simply tries again later.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from robovid._faults import fault_point
from robovid.durable import fsync_dir, fsync_file, temp_path_for

DEFAULT_SETTLE_S = 1.0
"""How long after the rename the old inode is watched: LeRobot's JSON write takes well under 10 ms."""


@dataclass(frozen=True)
class FileStamp:
    """Identity and version of a file: a rewrite in place changes size or mtime, a replace changes the inode."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)

    @classmethod
    def read(cls, path: Path) -> FileStamp | None:
        """The stamp of ``path``, or None when it does not exist."""
        try:
            return cls.of(os.stat(path))
        except FileNotFoundError:
            return None


def replace_if_unchanged(
    path: Path,
    expected: FileStamp,
    write: Callable[[Path], object],
    settle_s: float = DEFAULT_SETTLE_S,
    fault_name: str = "guarded-replace",
    wait: Callable[[float], object] = time.sleep,
) -> bool:
    """Publish what ``write(temp_path)`` writes at ``path`` if ``path`` is still ``expected``.

    True when robovid's version was published and no concurrent write was lost; False when
    the file changed before the rename (nothing replaced) or a writer raced the rename (its
    content was put back). Either way the caller may read the file again and retry.
    ``wait(settle_s)`` is how the settle time passes (tests pass a hook that holds it).
    """
    try:
        old_fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        if FileStamp.of(os.fstat(old_fd)) != expected:
            return False
        temp = temp_path_for(path)
        try:
            write(temp)
            fsync_file(temp)
            fault_point(f"{fault_name}:before-replace")
            if FileStamp.read(path) != expected:
                return False
            os.replace(temp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        fsync_dir(path.parent)
        fault_point(f"{fault_name}:after-replace")
        return _old_inode_untouched(path, old_fd, expected, settle_s, wait)
    finally:
        os.close(old_fd)


def _old_inode_untouched(
    path: Path, old_fd: int, expected: FileStamp, settle_s: float, wait: Callable[[float], object]
) -> bool:
    """After the rename: if a writer still had the old inode open and wrote to it, put its content back."""
    published = FileStamp.read(path)
    wait(settle_s)
    if FileStamp.of(os.fstat(old_fd)) == expected:
        return True
    content = _stable_content(old_fd, settle_s)
    if published is not None and FileStamp.read(path) == published:
        temp = temp_path_for(path)
        try:
            temp.write_bytes(content)
            fsync_file(temp)
            if FileStamp.read(path) == published:
                os.replace(temp, path)
                fsync_dir(path.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    return False


def _stable_content(fd: int, settle_s: float, attempts: int = 20) -> bytes:
    """The bytes of an open file once its size and mtime stop changing (a writer may still be at it)."""
    for _ in range(attempts):
        before = FileStamp.of(os.fstat(fd))
        content = os.pread(fd, before.size, 0)
        time.sleep(max(settle_s / 10, 0.01))
        if FileStamp.of(os.fstat(fd)) == before:
            return content
    return os.pread(fd, os.fstat(fd).st_size, 0)
