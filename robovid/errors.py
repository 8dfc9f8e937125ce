"""Every error the robovid library raises, under one base class; all exported by :mod:`robovid`.

Each type also derives from the built-in it refines, so code written against the
reference module (which raised ``ValueError``/``FileNotFoundError``) keeps working.
Messages say what was wrong, where, and what to do. The service's own errors, and the
exit code each maps to, are in ``robovid_watch.errors``.
"""

from __future__ import annotations


class RobovidError(Exception):
    """Base class of every error robovid raises on purpose."""


class FrameTimestampError(RobovidError, ValueError):
    """A queried timestamp has no frame within the tolerance."""


class InvalidToleranceError(RobovidError, ValueError, TypeError):
    """A decode's ``tolerance_s`` is not a number of seconds >= 0 (None, negative, NaN, not a number). A
    ``ValueError`` as robovid raised for a negative one, and a ``TypeError`` as the reference raised for None."""


class InvalidEncoderOptionError(RobovidError, ValueError):
    """An encoder option (codec, pixel format, g, crf, preset, ...) is not supported."""

    def __init__(self, message: str, option: str = "") -> None:
        super().__init__(message)
        self.option = option
        """The option at fault (``vcodec``, ``crf``, ...)."""


class BackendUnavailableError(RobovidError, ImportError):
    """The requested decoding backend cannot be loaded on this machine."""


class VideoFormatError(RobovidError, ValueError):
    """A video file is not in a form robovid can read or append to."""


class TruncatedVideoError(VideoFormatError, EOFError):
    """A video file ends before the sample data its own movie box points at (cut short by a copy, a full disk or
    a crash); nothing is taken from it. Also an ``EOFError``, what robovid raised for it before."""


class MismatchedVideosError(RobovidError, ValueError):
    """Videos to be joined differ in codec, size, pixel format or frame rate."""


class UnevenFrameTimingError(RobovidError, ValueError):
    """An episode video whose frames are not all equally long (variable frame rate): appended or joined, its
    chunk's timestamps would no longer follow the frame rate. Refused before anything is written; re-encode it
    at a constant rate (:func:`robovid.reencode_video`)."""


class EpisodeError(RobovidError, ValueError):
    """An episode folder cannot be turned into video; its PNGs are kept."""


class EmptyEpisodeError(EpisodeError, FileNotFoundError):
    """An episode folder holds no frames."""


class FrameSequenceError(EpisodeError):
    """Frame files are missing (a gap), duplicated or oddly named."""


class CorruptFrameError(EpisodeError):
    """A frame file cannot be decoded as an image."""


class FrameSizeError(EpisodeError):
    """Frames of one episode differ in size, or a size is not encodable."""


class UnsafePathError(EpisodeError, PermissionError):
    """A path leaves the recording root (for example through a symlink)."""


class VerificationError(RobovidError, ValueError):
    """An encoded video does not match its source frames; nothing was deleted."""


class FrameMismatchError(VerificationError):
    """A decoded frame does not show its own source frame in some tile (stale or far off)."""

    def __init__(self, message: str, frame: int, tile: dict[str, int], kind: str) -> None:
        super().__init__(message)
        self.frame = frame
        """Index of the first frame found wrong, in the episode."""
        self.tile = tile
        """The tile as a pixel rectangle: ``{"x", "y", "w", "h"}``."""
        self.kind = kind
        """``stale`` (shows the previous frame's content) or ``off`` (far off its own frame)."""


class FrameFormatError(EpisodeError):
    """A frame decodes but its pixel format is one robovid refuses (16-bit, translucent alpha)."""


class UnreadableFrameError(EpisodeError, PermissionError):
    """A frame file or episode folder exists but robovid may not read it (permissions)."""


class MetadataError(RobovidError, ValueError):
    """The segments metadata is unreadable or inconsistent, or lacks the segment asked for."""


class RemoteError(RobovidError, OSError):
    """A remote store (``s3://``, ``gs://``, ...) could not be reached or refused a request; its client's own
    error is chained. robovid-ship retries after a back-off; a reader may simply try again."""


class InfoJsonError(RobovidError, ValueError):
    """``meta/info.json`` exists but cannot be used."""


class LeRobotMetadataError(RobovidError, ValueError):
    """A LeRobot metadata file (``meta/info.json``, an episodes file) cannot be read or is inconsistent."""


class StreamingError(RobovidError, RuntimeError):
    """A :class:`robovid.StreamingVideoEncoder` call out of order, or its encoder failed (LeRobot raises RuntimeError)."""


class UnknownCameraError(RobovidError, KeyError):
    """A :class:`robovid.StreamingVideoEncoder` was fed a frame for a camera its episode did not open. A
    ``KeyError`` as LeRobot's encoder raises; its message is printed as written (not quoted, as a KeyError's)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RepairError(RobovidError, RuntimeError):
    """``robovid verify --repair`` cannot run on a root (another robovid process holds it, or it is not a folder)."""


class MergeError(RobovidError, ValueError):
    """Roots cannot be merged as asked (a source locked, changed or unlike the others); nothing half-done is left."""


class MergeMismatchError(MergeError):
    """Roots that cannot make one dataset: their fps, robot type, features, shapes or video formats differ
    (the message names each difference). Checked before anything moves."""
