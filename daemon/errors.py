"""The service's errors, each beside the exit code it maps to; every exit code of ``robovid-watch``, ``robovid-ship``
and ``robovid``.

Exit codes follow sysexits.h. systemd's unit has ``RestartPreventExitStatus=65 78``: restarting
cannot fix bad settings or unreadable metadata, so those two stop the service for good, while
1 (and 75, another instance holding the root) let systemd try again. Library errors live in
:mod:`robovid.errors`; the service's derive from the same :class:`~robovid.errors.RobovidError`.
"""

from __future__ import annotations

from robovid.errors import EpisodeError, MetadataError, RemoteError, RobovidError

EXIT_OK = 0

EXIT_FAILURE = 1
"""An error systemd should restart the service for (:class:`ObserverDiedError`, an unusable root, a crash);
for the ``robovid`` command, problems found (failed episodes, a damaged segment, a file not compacted)."""


class ObserverDiedError(RobovidError, RuntimeError):
    """watchdog's observer thread stopped; the service exits with :data:`EXIT_FAILURE` so systemd restarts it."""


EXIT_USAGE = 64
"""EX_USAGE: the command line is wrong (``robovid-watch`` takes no arguments; ``robovid`` without a command)."""

EXIT_DATA = 65
"""EX_DATAERR, for :class:`~robovid.errors.MetadataError` (re-exported here): the segments metadata is
unreadable; restarting cannot help (RestartPreventExitStatus)."""


class RootLockedError(RobovidError, BlockingIOError):
    """Another robovid process is working on this root."""


class RootReplacedError(RobovidError, RuntimeError):
    """The root path no longer names the directory the service locked; it exits with :data:`EXIT_FAILURE`."""


EXIT_LOCKED = 75
"""EX_TEMPFAIL, for :class:`RootLockedError`: another process holds the root; systemd may retry later."""


class ConfigError(RobovidError, ValueError):
    """A ``ROBOVID_*`` variable has a bad value; the message names it and the allowed values."""


EXIT_CONFIG = 78
"""EX_CONFIG, for :class:`ConfigError`: systemd's unit has RestartPreventExitStatus=78, so a bad value
does not restart-loop."""


class DuplicateEpisodeError(EpisodeError):
    """A committed episode's folder holds files that were not encoded, or was recorded again; they are kept."""


class EpisodeContinuedError(EpisodeError):
    """Frames were written into a committed episode's folder after it was encoded; they are kept and reported."""


class RowNotStorableError(EpisodeError):
    """The episode's metadata row cannot be stored (an episode index past int64, a camera key that is not
    UTF-8): found before the chunk is touched, so the episode fails alone and its PNGs are kept."""


class EncoderCrashedError(EpisodeError):
    """The service crashed natively (a segfault or abort, e.g. inside the encoder library) twice while this episode
    alone was being processed: it is parked, its PNGs kept, so the service goes on with every other episode. The
    message names the kept crash logs and what to try (another ``ROBOVID_VCODEC``) and how to retry."""


class CommitFailedError(RobovidError, RuntimeError):
    """An episode's metadata row could not be committed for a reason that is not its frames' (a disk error,
    a segment table robovid cannot write): the append was taken back and the PNGs kept. The message says what
    failed and what to do; a restart, or any change to the folder, retries the episode."""


class EpisodeChangedError(RobovidError, RuntimeError):
    """The folder changed while it was being encoded; the encode is dropped and the episode queued again."""


class JournalReplacedError(RobovidError, RuntimeError):
    """robovid-ship's journal directory is not the one it locked (deleted or replaced under it); it exits
    with :data:`EXIT_FAILURE`, so systemd starts one shipper afresh."""


class RemoteTaskError(RobovidError, RuntimeError):
    """``robovid process --ray``: an episode's Ray task was lost for a reason other than the episode (its worker
    kept dying, the cluster went away, Ray is missing). Nothing is recorded against the episode: its PNGs are
    kept and the next rescan or run takes it again."""


class ArchiveError(RobovidError, ValueError):
    """``robovid convert``: SRC is not a LeRobot v2.1 archive robovid can read (what is missing is named)."""


class RemoteMismatchError(RemoteError):
    """robovid-ship: a remote object is missing, or its size or SHA-256 is not what was sent; shipped again."""


__all__ = [
    "EXIT_CONFIG",
    "EXIT_DATA",
    "EXIT_FAILURE",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ArchiveError",
    "CommitFailedError",
    "ConfigError",
    "DuplicateEpisodeError",
    "EncoderCrashedError",
    "EpisodeChangedError",
    "EpisodeContinuedError",
    "JournalReplacedError",
    "MetadataError",
    "ObserverDiedError",
    "RemoteError",
    "RemoteMismatchError",
    "RemoteTaskError",
    "RootLockedError",
    "RootReplacedError",
    "RowNotStorableError",
]


class LeRobotLengthMismatchError(EpisodeError):
    """An episode folder of a LeRobot root holds another number of frames than LeRobot saved; its PNGs are kept."""
