"""Stage 7, clean: delete exactly the files the service encoded, never anything else.

What "encoded" means is decided by each frame's identity, not by clocks: when an episode is
encoded, every frame's (inode, size, mtime, ctime) is recorded in the journal intent
(:func:`frame_identities`). A file is deleted only while it still has that identity. A frame
rewritten in place (a re-take), even with an mtime set back by a wrong clock, has a new ctime,
which no program can set, so it is kept. Everything else in the folder is left alone:

- sidecar files a recorder writes beside the frames (``timestamps.json``, ``.DS_Store``, a
  ``depth/`` folder) stay, silently;
- frames numbered past the committed episode (a recorder that paused longer than
  ``ROBOVID_SETTLE_S`` and then went on) stay and are reported (:class:`EpisodeContinuedError`);
- frames with the committed episode's numbers that are not the encoded files (a re-take with
  the same index) stay and are reported (:class:`DuplicateEpisodeError`).

The folder itself is removed only when the episode was finished by its completion marker and
nothing else is left in it. In settle mode (no marker) the emptied folder stays, so a recorder
that was only pausing can go on writing into it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from robovid._faults import fault_point
from robovid._stop import StopFlag
from robovid.durable import fsync_dir
from robovid.errors import FrameSequenceError
from robovid.layout import FRAME_RE, images_dir

from .discover import EpisodeRef
from .errors import DuplicateEpisodeError, EpisodeContinuedError
from .state import Intent

if TYPE_CHECKING:
    from .stages import Context


def frame_identity(st: os.stat_result) -> str:
    """A short digest of what a later write to the file would change: inode, size, mtime and ctime."""
    key = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def frame_identities(frames: list[Path]) -> dict[str, str]:
    """Each frame's name and identity, from one ``lstat`` each, taken before the frames are read."""
    try:
        return {p.name: frame_identity(os.lstat(p)) for p in frames}
    except FileNotFoundError as error:
        raise FrameSequenceError(f"{error.filename}: disappeared while the episode was being read.") from error


@dataclass
class Leftovers:
    """What a committed episode's folder holds besides the files that were encoded (and deleted)."""

    retaken: list[str] = field(default_factory=list)
    """Frames with the committed episode's numbers that are not the encoded files."""
    continued: list[str] = field(default_factory=list)
    """Frames numbered past the committed episode."""
    other: list[str] = field(default_factory=list)
    """Sidecar files and folders; never reported, never deleted."""

    def check(self, folder: Path, camera: str, episode: int, num_frames: int, settle_s: float) -> None:
        """Raise the error that reports kept frames, if any (sidecar files alone are not reported)."""
        if self.retaken:
            raise DuplicateEpisodeError(
                f"{folder}: episode {episode} of camera {camera!r} is committed, but {_names(self.retaken)} in its "
                "folder are not the frames that were encoded (re-recorded with the same index, or rewritten after "
                "the encode). They were kept: record the new take under a new episode index, or move them out."
            )
        if self.continued:
            settle = (
                f"no new frame came for ROBOVID_SETTLE_S={settle_s:g} s, so the episode was taken as finished"
                if settle_s > 0
                else "the episode was already finished"
            )
            raise EpisodeContinuedError(
                f"{folder}: {_names(self.continued)} were written after episode {episode} of camera {camera!r} was "
                f"committed with {num_frames} frames ({settle}). They were kept as PNG. To encode them, move them "
                "into a new episode folder, numbered from frame-000000.png; to avoid this, raise ROBOVID_SETTLE_S "
                "above the recorder's longest pause, or have the recorder write the completion marker "
                "(ROBOVID_COMPLETE_MARKER) and set ROBOVID_SETTLE_S=0."
            )


def _names(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:5])
    return f"{len(names)} frame file(s) ({shown}{', ...' if len(names) > 5 else ''})"


def leftovers(folder: Path, marker: str, num_frames: int, encoded: dict[str, str] | None = None) -> Leftovers:
    """Classify what ``folder`` holds: frames of the committed episode's numbers, later frames, other files."""
    found = Leftovers()
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            match = FRAME_RE.fullmatch(entry.name)
            if entry.name == marker or match is None:
                if entry.name != marker:
                    found.other.append(entry.name)
            elif int(match.group(1)) < num_frames or (encoded is not None and entry.name in encoded):
                found.retaken.append(entry.name)
            else:
                found.continued.append(entry.name)
    return found


def clean_folder(
    folder: Path,
    stop_at: Path,
    marker: str,
    encoded: dict[str, str],
    num_frames: int,
    legacy_newest_mtime_ns: int = 0,
    stop: StopFlag | None = None,
    legacy_names: set[str] | None = None,
) -> Leftovers:
    """Delete the encoded files of ``folder`` (and its marker and the folder, see the module docstring).

    ``encoded``: name -> identity of every encoded frame. An intent written before identities
    were recorded has none: then a file with an encoded frame's name and an mtime no newer than
    ``legacy_newest_mtime_ns`` goes (the old rule). Returns what was kept.
    """
    by_marker = os.path.lexists(folder / marker)
    doomed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            with contextlib.suppress(FileNotFoundError):
                st = entry.stat(follow_symlinks=False)
                if encoded:
                    if encoded.get(entry.name) == frame_identity(st):
                        doomed.append(Path(entry.path))
                elif _legacy_encoded(entry.name, num_frames, legacy_names) and st.st_mtime_ns <= legacy_newest_mtime_ns:
                    doomed.append(Path(entry.path))
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        fault_point("clean:unlink", stop)
    kept = leftovers(folder, marker, num_frames, encoded)
    if by_marker and not kept.retaken and not kept.continued:
        with contextlib.suppress(FileNotFoundError):  # the marker last: a folder that keeps frames stays complete
            os.unlink(folder / marker)
    fault_point("clean:before-rmdir")
    if by_marker:
        _remove_empty_dirs(folder, stop_at)
    else:
        with contextlib.suppress(OSError):
            fsync_dir(folder)
    return kept


def _legacy_encoded(name: str, num_frames: int, names: set[str] | None = None) -> bool:
    if names is not None:
        return name in names
    match = FRAME_RE.fullmatch(name)
    return match is not None and int(match.group(1)) < num_frames


def _remove_empty_dirs(directory: Path, stop_at: Path) -> None:
    current = directory
    while current != stop_at and stop_at in current.parents:
        try:
            current.rmdir()
        except OSError:
            break
        current = current.parent
    with contextlib.suppress(OSError):
        fsync_dir(current if current.exists() else stop_at)


def clean(ctx: Context, ref: EpisodeRef, intent: Intent | None, frames: list[Path] | None = None) -> None:
    """Stage 7: delete exactly the encoded frames (:mod:`robovid_watch.cleaning`), then the intent.

    Files that were not encoded are kept; kept frames are reported by the error raised after the
    intent is cleared (the committed episode needs no more cleaning). ``frames``: for an intent
    without frame identities (a streamed episode's PNG tail), the only names that may go.
    """
    if intent is None:
        return  # a committed episode whose folder reappeared: the service reports it, never deletes it
    kept = clean_folder(
        ref.path,
        images_dir(ctx.root),
        ctx.marker,
        intent.encoded,
        intent.num_frames,
        legacy_newest_mtime_ns=intent.source_mtime_ns,
        stop=ctx.stop,
        legacy_names=None if frames is None else {p.name for p in frames},
    )
    fault_point("clean:before-clear-intent")
    ctx.state.clear_intent(ref.camera, ref.episode)
    kept.check(ref.path, ref.camera, ref.episode, intent.num_frames, ctx.settle_s)
