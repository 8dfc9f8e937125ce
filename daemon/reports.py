"""What the service tells the operator about an episode it could not finish, and records for ``robovid status``."""

from __future__ import annotations

import time

import structlog

from robovid.errors import FrameMismatchError

from .discover import EpisodeRef, folder_signature
from .errors import CommitFailedError, DuplicateEpisodeError, EpisodeContinuedError
from .state import Deferral, Failure, RootState

log = structlog.get_logger("robovid_watch")

FAIL_ACTION = (
    "the PNGs were kept; fix or replace the frames (any change to the folder retries it), or move the folder out "
    "of images/"
)
MISMATCH_ACTION = (
    "the PNGs were kept: the encoded video does not show what the camera saw in this tile. Encode with robovid's "
    "faithful defaults (unset ROBOVID_VCODEC, ROBOVID_CRF and ROBOVID_PRESET), a slower ROBOVID_PRESET or a lower "
    "ROBOVID_CRF, restart the service, then retry the episode by touching a file in its folder (any change to the "
    "folder retries it)"
)
"""What an ``episode_failed`` event for a frame that does not show its source tells the operator."""
COMMIT_ACTION = (
    "the frames are fine and were kept: the disk or the segment table is at fault (the reason says which error). "
    "Free space or fix the disk, restore or repair the segment table (`robovid verify ROOT`; a damaged part: stop "
    "the service, move it aside, `robovid verify --repair ROOT`), then restart robovid-watch (a restart retries the "
    "episode, as does any change to its folder)"
)
"""What an ``episode_failed`` event for a row that could not be committed tells the operator."""
KEPT_ACTION = (
    "the episode is committed and the files named were kept as they are: the reason says what they are and how to "
    "encode them; any change to the folder looks at it again"
)
"""What an event about files kept in a committed episode's folder tells the operator."""


def report_failure(state: RootState, ref: EpisodeRef, error: BaseException, unexpected: bool = False) -> None:
    """Record the failure (with the folder's signature: not retried until the folder changes) and log it.

    Frames kept after a commit are ``episode_continued`` (a warning); everything else ``episode_failed``.
    """
    error_type = type(error).__name__
    reason = f"unexpected {error_type}: {error}" if unexpected else str(error)
    failure = Failure(
        ref.camera, ref.episode, str(ref.path), reason, error_type, folder_signature(ref.path), time.time()
    )
    state.record_failure(failure)
    continued = isinstance(error, EpisodeContinuedError)
    (log.warning if continued else log.error)(
        "episode_continued" if continued else "episode_failed",
        camera=ref.camera,
        episode=ref.episode,
        path=str(ref.path),
        reason=reason,
        error_type=error_type,
        exc_info=error if unexpected else None,
        **_what_to_do(error),
    )


DEFERRED_ACTION = (
    "the PNGs were kept and nothing is held against the episode: check the Ray cluster (`ray status`, worker "
    "memory); the next rescan or run takes the episode again"
)
"""What an ``episode_not_encoded`` event (a ``--ray`` task lost, not the episode's fault) tells the operator."""


def report_deferred(state: RootState, ref: EpisodeRef, error: BaseException) -> None:
    """Record (for ``robovid status``) and log an episode set aside for a fault not its own; no failure record."""
    state.record_deferral(
        Deferral(ref.camera, ref.episode, str(ref.path), str(error), type(error).__name__, time.time())
    )
    log.error(
        "episode_not_encoded",
        camera=ref.camera,
        episode=ref.episode,
        path=str(ref.path),
        detail=str(error),
        error_type=type(error).__name__,
        action=DEFERRED_ACTION,
    )


def _what_to_do(error: BaseException) -> dict[str, object]:
    """The event's action, and for a frame that does not show its source, which frame and tile."""
    if isinstance(error, FrameMismatchError):
        return {"action": MISMATCH_ACTION, "frame": error.frame, "tile": error.tile, "mismatch": error.kind}
    if isinstance(error, CommitFailedError):
        return {"action": COMMIT_ACTION}
    if isinstance(error, (EpisodeContinuedError, DuplicateEpisodeError)):
        return {"action": KEPT_ACTION}
    return {"action": FAIL_ACTION}


def forget_commit_failures(state: RootState) -> None:
    """At start: episodes whose row could not be committed are tried again (what :data:`COMMIT_ACTION` promises)."""
    for failure in state.failures():
        if failure.error_type == CommitFailedError.__name__:
            state.clear_failure(failure.camera, failure.episode)
