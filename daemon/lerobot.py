"""The service beside LeRobot: when a LeRobot episode is ready, and keeping LeRobot's metadata up to date.

Three kinds of root, told apart by ``meta/info.json`` on every pass:

- **LeRobot v3** (``codebase_version`` v3.x, not written by robovid's export). Left alone unless
  ``ROBOVID_LEROBOT_ENCODE`` is set: LeRobot may encode those PNGs itself later (``batch_encoding_size``
  > 1, ``lerobot-record``'s exit), and robovid must not take them first. When robovid encodes, an
  episode folder is ready only once LeRobot has saved the episode (``total_episodes > N``: LeRobot
  has then read its PNGs for the last time) *and* its frame count is proved equal to LeRobot's
  ``length`` (:func:`robovid.lerobot_meta.check_frame_counts`); the marker and settle time play no
  part. Afterwards robovid fills its video columns into LeRobot's closed episodes files and, once
  LeRobot is idle, ``features[key]["info"]`` into info.json.
- **Exported by robovid** (its export marker exists): episodes complete by marker or settle time as
  usual, and with ``ROBOVID_LEROBOT_EXPORT`` the export is brought up to date after commits.
- **Anything else**: as before; with ``ROBOVID_LEROBOT_EXPORT`` it becomes an exported root.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from robovid.durable import write_bytes_durably
from robovid.errors import EpisodeError, LeRobotMetadataError
from robovid.frames import FRAME_PATTERN
from robovid.guarded_replace import FileStamp
from robovid.layout import images_dir, info_json_path, lerobot_episodes_files, lerobot_export_marker, parse_episode_dir
from robovid.lerobot_export import ExportCache, export_dataset, exportable
from robovid.lerobot_meta import (
    ColumnsReport,
    InfoSnapshot,
    SavedEpisodes,
    add_video_columns,
    add_video_info,
    check_frame_counts,
    has_video_info,
    lerobot_idle,
    read_info,
    saved_episodes,
    segment_places,
    superseded_places,
    video_info,
)
from robovid.metadata import read_segments

from .config import Settings
from .discover import EpisodeRef
from .errors import LeRobotLengthMismatchError
from .migrate import migrate_state
from .state import RootState

log = structlog.get_logger("robovid_watch")


@dataclass(frozen=True)
class Verdict:
    """Whether a LeRobot episode folder may be processed now."""

    ready: bool
    reason: str = ""
    """Why not (waiting), or what is wrong (with ``error``)."""
    error: EpisodeError | None = None
    """Set when the folder must be refused: the episode fails with this error, its PNGs kept."""


class LeRobotMode:
    """The service's view of the root's LeRobot metadata. Used by the main thread only."""

    def __init__(
        self,
        root: Path,
        *,
        encode: bool,
        export: bool,
        task: str,
        quiet_s: float,
        chunks_size: int,
        video_files_size_in_mb: float,
        export_marker: Path,
    ) -> None:
        self.root = root
        self.encode, self.export, self.task, self.quiet_s = encode, export, task, quiet_s
        self.chunks_size, self.video_mb = chunks_size, video_files_size_in_mb
        self.export_marker = export_marker
        self.info: InfoSnapshot | None = None
        self._saved: SavedEpisodes | None = None
        self._saved_key: tuple[object, ...] | None = None
        self._lengths: dict[int, int] = {}
        self._waiting_logged: set[tuple[str, int]] = set()
        self._left_alone_logged = False
        self._dirty = True
        self._complete_logged = False
        self._retry_at: float | None = None
        self._export_cache = ExportCache()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> LeRobotMode:
        options: dict[str, Any] = {
            "encode": settings.lerobot_encode,
            "export": settings.lerobot_export,
            "task": settings.lerobot_task,
            "quiet_s": settings.lerobot_quiet_s,
            "chunks_size": settings.chunk_size,
            "video_files_size_in_mb": settings.video_file_size_mb,
            "export_marker": lerobot_export_marker(settings.root),
        }
        return cls(settings.root, **(options | overrides))

    def judge(self, candidates: Mapping[tuple[str, int], EpisodeRef]) -> dict[tuple[str, int], Verdict]:
        """Readiness of this pass's candidate folders: all waiting when the root is left to LeRobot, none
        judged when it is not a LeRobot root (the marker and settle time decide there)."""
        self.refresh()
        if self.leaves_root_alone():
            return {key: Verdict(False, "left to LeRobot") for key in candidates}
        return self.verdicts(candidates.values()) if self.is_lerobot else {}

    # what kind of root -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read info.json if it changed. A half-written one (LeRobot rewrites it in place) keeps the last."""
        stamp = FileStamp.read(info_json_path(self.root))
        if self.info is not None and stamp == self.info.stamp:
            return
        try:
            self.info = read_info(self.root)
        except LeRobotMetadataError:
            return
        self._dirty = True

    @property
    def is_lerobot(self) -> bool:
        """A LeRobot v3 root that robovid did not export itself."""
        return self.info is not None and self.info.is_lerobot_v3 and not self.export_marker.exists()

    def leaves_root_alone(self) -> bool:
        """True for a LeRobot root robovid is not asked to encode (said once in the log)."""
        if not self.is_lerobot or self.encode:
            return False
        if not self._left_alone_logged:
            self._left_alone_logged = True
            log.warning(
                "lerobot_root",
                root=str(self.root),
                mode="left to LeRobot",
                action="LeRobot encodes this root's videos itself unless it was recorded with its encoding "
                "switched off (README, 'Using robovid with LeRobot'); if it was, set ROBOVID_LEROBOT_ENCODE=1 "
                "and robovid encodes each episode once LeRobot has saved it",
            )
        return True

    # readiness -------------------------------------------------------------------------------
    def committed(self, episode: int, num_frames: int) -> None:
        """An episode of this root was committed with ``num_frames`` (any camera): its length is known."""
        self._lengths.setdefault(episode, num_frames)
        self._dirty = True

    def load_committed(self, rows: Iterable[Mapping[str, object]]) -> None:
        for row in rows:
            self.committed(int(row["episode_index"]), int(row["num_frames"]))  # type: ignore[call-overload]

    def verdicts(self, refs: Iterable[EpisodeRef]) -> dict[tuple[str, int], Verdict]:
        """For each candidate folder of a LeRobot root: ready, waiting, or refused."""
        saved = self._saved_episodes()
        if saved is None:
            return {}
        by_camera: dict[str, list[EpisodeRef]] = {}
        for ref in refs:
            by_camera.setdefault(ref.camera, []).append(ref)
        verdicts: dict[tuple[str, int], Verdict] = {}
        for camera, camera_refs in by_camera.items():
            counts = self._folder_counts(camera, saved.total_episodes)
            check = check_frame_counts(saved, self._lengths, counts)
            for ref in camera_refs:
                verdicts[(camera, ref.episode)] = self._verdict(ref, saved, check.ready, check.mismatched)
        return verdicts

    def _verdict(
        self, ref: EpisodeRef, saved: SavedEpisodes, ready: frozenset[int], mismatched: Mapping[int, tuple[int, int]]
    ) -> Verdict:
        if ref.episode in ready:
            return Verdict(True)
        if ref.episode in mismatched:
            count, length = mismatched[ref.episode]
            return Verdict(False, error=_mismatch(ref, count, length))
        if ref.episode >= saved.total_episodes:
            reason = f"not saved by LeRobot yet (info.json: total_episodes {saved.total_episodes})"
        else:
            reason = "saved, but its length cannot be proved until LeRobot closes its episodes file (finalize)"
        self._log_waiting(ref, reason)
        return Verdict(False, reason)

    def _log_waiting(self, ref: EpisodeRef, reason: str) -> None:
        key = (ref.camera, ref.episode)
        if key not in self._waiting_logged:
            self._waiting_logged.add(key)
            log.info("episode_waiting", camera=ref.camera, episode=ref.episode, reason=reason)

    def _saved_episodes(self) -> SavedEpisodes | None:
        if self.info is None:
            return None
        files = tuple(FileStamp.read(p) for p in lerobot_episodes_files(self.root))
        key = (self.info.stamp, files)
        if self._saved is None or key != self._saved_key:
            self._saved, self._saved_key = saved_episodes(self.root, self.info), key
        return self._saved

    def _folder_counts(self, camera: str, total_episodes: int) -> dict[int, int]:
        """Frames in each saved episode folder of ``camera`` still on disk."""
        counts: dict[int, int] = {}
        try:
            with os.scandir(images_dir(self.root) / camera) as folders:
                saved = [(e, index) for e in folders if (index := parse_episode_dir(e.name)) is not None]
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return counts
        for folder, episode in saved:
            if episode >= total_episodes:
                continue
            try:
                with os.scandir(folder.path) as entries:
                    counts[episode] = sum(1 for e in entries if FRAME_PATTERN.fullmatch(e.name))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
        return counts

    # LeRobot's metadata ------------------------------------------------------------------------
    def after_commits(self) -> SyncResult | None:
        """Bring LeRobot's files up to date with the committed segments, when anything changed; None if not due."""
        if not self._dirty and (self._retry_at is None or time.monotonic() < self._retry_at):
            return None
        self._dirty, self._retry_at = False, None
        info = self.info
        if info is not None and self.is_lerobot and self.encode:
            return self._sync(info)
        if self.export and not self.is_lerobot:
            return self._export()
        return None

    def _sync(self, info: InfoSnapshot) -> SyncResult:
        rows = read_segments(self.root).to_pylist()
        earlier = superseded_places(read_segments(self.root, all_takes=True).to_pylist())
        keys = info.video_keys
        report = add_video_columns(self.root, keys, segment_places(rows), superseded=earlier)
        if report.written:
            log.info("lerobot_columns_written", files=[str(p) for p in report.written])
        for key, episode, frames, length in report.mismatched:
            log.error(
                "lerobot_length_mismatch",
                camera=key,
                episode=episode,
                frames=frames,
                lerobot_length=length,
                action="the segment was not written into LeRobot's episodes file; check the episode's recording",
            )
        self._dirty = bool(report.raced)  # LeRobot wrote meanwhile: again on the next pass
        info_done = self._sync_info(rows, keys)
        complete = report.complete and info_done
        if complete and not self._complete_logged:
            self._complete_logged = True
            log.info("lerobot_metadata_complete", episodes=info.total_episodes, video_keys=keys)
        detail = f"{info.total_episodes} episodes, video columns and features info in LeRobot's files"
        return SyncResult(complete, detail if complete else _describe(report, info_done))

    def _sync_info(self, rows: list[dict[str, Any]], keys: list[str]) -> bool:
        """features[key]["info"] for every video key, written once LeRobot is idle; True when all are there."""
        self.refresh()
        info = self.info
        if info is None:
            return False
        if all(has_video_info(info.data["features"][key].get("info")) for key in keys):
            return True
        firsts = {key: next((r for r in rows if r["video_key"] == key), None) for key in keys}
        if any(row is None for row in firsts.values()):
            return False
        if not lerobot_idle(self.root, info, self.quiet_s):
            self._retry_at = time.monotonic() + max(1.0, self.quiet_s / 2)
            return False
        written = add_video_info(self.root, info, {key: video_info(row) for key, row in firsts.items() if row})
        if written:
            log.info("lerobot_info_written", video_keys=keys)
        else:
            self._dirty = True  # LeRobot rewrote info.json meanwhile: again on the next pass
        self.refresh()
        return self.info is not None and all(
            has_video_info(self.info.data["features"][key].get("info")) for key in keys
        )

    def _export(self) -> SyncResult:
        episodes, stopped = exportable(self.root, read_segments(self.root).to_pylist(), cache=self._export_cache)
        if not episodes:
            return SyncResult(False, stopped or "no committed episode yet")
        if not self.export_marker.exists():
            write_bytes_durably(self.export_marker, b"robovid exported this root as a LeRobot v3 dataset\n")
        fps = int(next(iter(episodes[0].segments.values()))["fps"])
        report = export_dataset(
            self.root, episodes, fps, self.task, self.chunks_size, self.video_mb, cache=self._export_cache
        )
        if report.written:
            log.info(
                "lerobot_exported",
                episodes=report.episodes,
                frames=report.frames,
                files=len(report.written),
                stopped=stopped,
            )
        return SyncResult(not stopped, stopped or f"{report.episodes} episodes exported")


@dataclass(frozen=True)
class SyncResult:
    """What bringing LeRobot's files up to date achieved."""

    complete: bool
    """Every saved (or committed) episode is in LeRobot's files; the dataset loads."""
    detail: str


def _describe(report: ColumnsReport, info_done: bool) -> str:
    parts = []
    if report.open_files:
        parts.append(f"LeRobot has not closed {', '.join(map(str, report.open_files))} yet (finalize())")
    if report.missing:
        parts.append(f"{len(report.missing)} (camera, episode) not committed yet: {report.missing[:5]}")
    if report.mismatched:
        parts.append(f"frame counts differ from LeRobot's length: {report.mismatched[:5]}")
    if report.conflicts:
        parts.append(f"LeRobot wrote other video locations for {report.conflicts[:5]} (kept)")
    if not info_done:
        parts.append("features info not written yet (LeRobot not idle, or a camera has no segment)")
    return "; ".join(parts)


def sync_lerobot_once(settings: Settings) -> SyncResult:
    """``robovid lerobot ROOT``: under the root lock, bring LeRobot's files up to date once, now."""
    state = RootState(settings.root)
    state.prepare()
    state.acquire_lock()
    try:
        migrate_state(settings.root)
        mode = LeRobotMode.from_settings(settings, encode=True, export=True, quiet_s=0.0)
        mode.refresh()
        return mode.after_commits() or SyncResult(False, "nothing to do")
    finally:
        state.release_lock()


def _mismatch(ref: EpisodeRef, count: int, length: int) -> LeRobotLengthMismatchError:
    extra = (
        f" A discarded take (re-record) leaves its later frames behind: frame-{length:06d}.png .. "
        f"frame-{count - 1:06d}.png are not part of the saved episode; delete them and robovid encodes the rest."
        if count > length
        else " Frames LeRobot saved are missing from the folder; restore them."
    )
    return LeRobotLengthMismatchError(
        f"{ref.path}: holds {count} frames, but LeRobot saved episode {ref.episode} with {length}.{extra}"
    )
