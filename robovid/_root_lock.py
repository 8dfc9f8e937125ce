"""The root lock robovid-watch holds, for the library's offline writers (merge, verify --repair).

robovid-watch locks a recording root with an ``flock`` on the root folder itself, through a
descriptor it holds for its whole run (``daemon/state.py``), so deleting ``.robovid/`` cannot
bypass it. An offline writer takes the same lock without waiting and refuses to run when another
process holds it; the holder's pid is read from ``.robovid/lock``, for the message only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from robovid.durable import write_bytes_durably
from robovid.layout import lock_path


@contextlib.contextmanager
def hold_root_lock(
    root: Path, *, exclusive: bool, refuse: Callable[[str], Exception], missing: Callable[[], Exception]
) -> Iterator[None]:
    """Hold ``root``'s lock (shared or exclusive) for the block.

    Raises ``missing()`` when ``root`` is not a folder and ``refuse(holder_pid)`` when another process holds
    the lock. An exclusive holder writes its pid to ``.robovid/lock`` (best effort: the lock is the flock,
    not the file).
    """
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise missing() from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise refuse(lock_holder(root)) from None
        if exclusive:
            with contextlib.suppress(OSError):
                write_bytes_durably(lock_path(root), str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def lock_holder(root: Path) -> str:
    """The pid the lock's holder wrote, or ``unknown``."""
    try:
        return lock_path(root).read_text(encoding="utf-8", errors="replace").strip()[:32] or "unknown"
    except OSError:
        return "unknown"
