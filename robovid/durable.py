"""Durable file operations: the only way robovid publishes a file.

A file becomes visible under its final name only by ``os.replace`` of a fully
written and fsynced temp file that lives in the same directory (so the rename is
atomic and never crosses a filesystem), followed by an fsync of the directory so
the rename itself survives a power cut. Nothing here uses ``shutil.move``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from robovid.errors import TruncatedVideoError

TEMP_MARK = ".robovid-tmp-"


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (creations, renames, deletions) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durably(directory: Path) -> None:
    """``mkdir -p`` whose every new entry is durable: each created folder's parent is fsynced."""
    missing = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        fsync_dir(folder.parent)


def temp_path_for(final_path: Path) -> Path:
    """A unique hidden temp name beside ``final_path`` (same directory, same filesystem)."""
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    return final_path.with_name(f".{final_path.name}{TEMP_MARK}{token}")


def is_temp_path(path: Path) -> bool:
    """True for a temp file left by :func:`temp_path_for` (for example after a crash)."""
    return TEMP_MARK in path.name


def is_stale_temp_path(path: Path) -> bool:
    """A temp file of :func:`temp_path_for` whose writing process is gone (a crash left it)."""
    if not is_temp_path(path):
        return False
    owner = path.name.rsplit(TEMP_MARK, 1)[1].split("-", 1)[0]
    if not owner.isdigit():
        return False
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


@contextlib.contextmanager
def atomic_output(final_path: Path) -> Iterator[Path]:
    """Yield a temp path; on success fsync it, rename it onto ``final_path``, fsync the dir.

    On any exception the temp file is removed and ``final_path`` is untouched.
    """
    make_dirs_durably(final_path.parent)
    temp = temp_path_for(final_path)
    try:
        yield temp
        fsync_file(temp)
        os.replace(temp, final_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    fsync_dir(final_path.parent)


def fsync_file(path: Path) -> None:
    """fsync one file by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_durably(final_path: Path, data: bytes) -> None:
    """Atomically replace ``final_path`` with ``data``, durable when this returns."""
    with atomic_output(final_path) as temp, open(temp, "wb") as f:
        f.write(data)


def copy_range(
    src: BinaryIO, dst: BinaryIO, start: int, length: int, block: int = 1 << 20, where: str | None = None
) -> None:
    """Copy ``length`` bytes of ``src`` (named ``where`` in errors) from ``start`` to the current position of ``dst``.

    TruncatedVideoError (an EOFError) if ``src`` ends first: its sample table points past its end.
    """
    src.seek(start)
    remaining = length
    while remaining:
        chunk = src.read(min(block, remaining))
        if not chunk:
            name = where or getattr(src, "name", None)
            raise TruncatedVideoError(
                f"{name if isinstance(name, str) else 'video'}: the file ends {remaining} bytes before the sample "
                f"data its movie box points at (bytes {start}..{start + length - 1}): it was cut short (an "
                "interrupted copy, a full disk). What was being written from it is not committed. Restore the file "
                "from its source or a backup, or encode it again."
            )
        dst.write(chunk)
        remaining -= len(chunk)


def unlink_durably(paths: list[Path]) -> None:
    """Delete files, then fsync each directory they were in."""
    dirs: set[Path] = set()
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        dirs.add(path.parent)
    for directory in dirs:
        if directory.exists():
            fsync_dir(directory)
