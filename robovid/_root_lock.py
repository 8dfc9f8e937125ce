"""The root lock robovid-watch holds, for the library's offline writers (merge, verify --repair).

robovid-watch locks a recording root with an ``flock`` on the root folder itself, through a
descriptor it holds for its whole run (``daemon/state.py``), so deleting ``.robovid/`` cannot
bypass it. An offline writer takes the same lock without waiting and refuses to run when another
process holds it; the holder's pid is read from the state folder's ``lock`` file
(:func:`robovid.layout.lock_path`), for the message only.

A root still in the layout from before the state move has the old lock file, which an older
robovid-watch locked instead of the folder. While that file exists it is locked too, the same
way, so an older service still running on the root (for example after an upgrade, before its
restart) keeps offline writers out as a current one does.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from robovid.durable import write_bytes_durably
from robovid.layout import legacy_lock_path, lock_path


@contextlib.contextmanager
def hold_root_lock(
    root: Path, *, exclusive: bool, refuse: Callable[[str], Exception], missing: Callable[[], Exception]
) -> Iterator[None]:
    """Hold ``root``'s lock (shared or exclusive) for the block.

    Raises ``missing()`` when ``root`` is not a folder and ``refuse(holder_pid)`` when another process holds
    the lock. An exclusive holder writes its pid to :func:`~robovid.layout.lock_path` (best effort: the lock
    is the flock, not the file).
    """
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise missing() from None
    legacy_fd: int | None = None
    try:
        _flock(fd, exclusive, lambda: refuse(lock_holder(root)))
        legacy_fd = _lock_legacy(root, exclusive, refuse)
        if exclusive:
            with contextlib.suppress(OSError):
                write_bytes_durably(lock_path(root), str(os.getpid()).encode())
        yield
    finally:
        if legacy_fd is not None:
            os.close(legacy_fd)
        os.close(fd)


def _flock(fd: int, exclusive: bool, refused: Callable[[], Exception]) -> None:
    """``flock`` without waiting; ``refused()`` is raised when another open file holds it."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise refused() from None


def _lock_legacy(root: Path, exclusive: bool, refuse: Callable[[str], Exception]) -> int | None:
    """Lock the old layout's lock file when it exists (an older robovid-watch locks that, not the folder)."""
    try:
        fd = os.open(legacy_lock_path(root), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        _flock(fd, exclusive, lambda: refuse(_pid_in(fd)))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pid_in(fd: int) -> str:
    """The pid an older robovid-watch wrote into its lock file, or ``unknown``."""
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"


def lock_holder(root: Path) -> str:
    """The pid the lock's holder wrote, or ``unknown``."""
    try:
        return lock_path(root).read_text(encoding="utf-8", errors="replace").strip()[:32] or "unknown"
    except OSError:
        return "unknown"
