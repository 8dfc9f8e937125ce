"""LeRobot-recorded roots in ``robovid merge``: their video located from LeRobot's own metadata, their data kept.

A root is LeRobot-recorded when its ``meta/info.json`` has features besides video and LeRobot's
index columns (``observation.state``, ``action``, ...): LeRobot wrote its ``data/`` rows, its
``meta/episodes`` (with each episode's place in the chunk videos, whoever encoded them: LeRobot
itself or robovid-watch) and its statistics. For such a source:

- **Video.** Each episode's ``videos/{key}/*`` columns become segment rows (:func:`segment_rows`):
  the first frame is the one shown at ``from_timestamp`` (within LeRobot's 1e-4 s tolerance), so
  the episode is appended by stream copy like any robovid episode, and DEST's rows get exact
  offsets from DEST's own files. An episode whose video columns are not all there yet waits.
- **Data.** When an episode is numbered (before any video moves), its ``data/`` rows, its row of
  ``meta/episodes`` and its source's task table are copied into DEST's merge state
  (:func:`store_episode`), so DEST's LeRobot files are a function of DEST's state alone and a rerun
  never needs a source that was merged before.
- **Metadata.** DEST's LeRobot files are then written from its merge state and segment table
  (:mod:`robovid._merge_lerobot_files`): data renumbered, exact video offsets, statistics
  aggregated as LeRobot 0.4.4 does, info.json last.

Sources must match the first one merged (kept in DEST's merge state): fps, robot type, and every
feature's dtype, shape, names and video format; anything else is :class:`MergeMismatchError`
naming what differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robovid._faults import fault_point
from robovid._movie import Movie, read_movie
from robovid.durable import atomic_output, write_bytes_durably
from robovid.errors import LeRobotMetadataError, MergeError, MergeMismatchError
from robovid.layout import (
    LEROBOT_DATA_PATH,
    chunk_path,
    info_json_path,
    lerobot_episodes_files,
    merge_dir,
)
from robovid.lerobot_export import INDEX_FEATURES
from robovid.lerobot_meta import VIDEO_COLUMNS
from robovid.lerobot_stats import (
    STAT_KEYS,
    FeatureStats,
    feature_stats_to_json,
)
from robovid.lerobot_tasks import read_tasks
from robovid.metadata import SegmentRow

TOLERANCE_S = 1e-4
"""LeRobot's decode tolerance: an episode's from_timestamp must name a frame this closely."""
VIDEO_INFO_KEYS = ("video.height", "video.width", "video.codec", "video.pix_fmt", "video.fps", "video.channels")


def lerobot_dir(dest: Path) -> Path:
    """Where DEST keeps the merged LeRobot sources' data, one file per DEST episode, and the reference info."""
    return merge_dir(dest) / "lerobot"


def data_features(info: Mapping[str, Any]) -> list[str]:
    """The features a recorder wrote besides video and LeRobot's index columns (``observation.state``, ...)."""
    features = info.get("features", {})
    return sorted(k for k, f in features.items() if f.get("dtype") != "video" and k not in INDEX_FEATURES)


@dataclass
class LeRobotSource:
    """One LeRobot-recorded root, read: its info.json, its episodes rows (by episode index) and task table."""

    root: Path
    info: dict[str, Any]
    episodes: dict[int, dict[str, Any]]
    tasks: list[str]
    rows: list[SegmentRow] = field(default_factory=list)
    """One per (camera, episode) whose video LeRobot's metadata places."""
    _data: dict[tuple[int, int], pa.Table] = field(default_factory=dict)

    @property
    def video_keys(self) -> list[str]:
        return sorted(k for k, f in self.info["features"].items() if f.get("dtype") == "video")

    def episode_data(self, episode: int) -> pa.Table:
        """The episode's rows of ``data/``, checked against its length."""
        row = self.episodes[episode]
        place = (int(row["data/chunk_index"]), int(row["data/file_index"]))
        path = self.root / LEROBOT_DATA_PATH.format(chunk_index=place[0], file_index=place[1])
        if place not in self._data:
            try:
                self._data[place] = pq.read_table(path)
            except (OSError, pa.ArrowException) as error:
                raise MergeError(f"{path}: unreadable ({error}). Is LeRobot still recording into it?") from error
        table = self._data[place]
        rows = table.filter(pc.equal(table["episode_index"], episode))
        frames = rows["frame_index"].to_pylist()
        if frames != list(range(int(row["length"]))):
            raise MergeError(
                f"{path}: episode {episode} has {len(frames)} rows (frame_index {frames[:3]}...), its meta/episodes "
                f"row says length {row['length']}. The source's LeRobot files disagree; repair it before merging."
            )
        return rows

    def identity(self) -> list[str]:
        """What tells this robot's recording from another's: digests of its first episodes' data rows."""
        found = []
        for episode in sorted(self.episodes)[:4]:
            table = self.episode_data(episode).select(data_features(self.info))
            digest = hashlib.sha256(json.dumps(table.to_pylist(), default=str).encode()).hexdigest()[:32]
            found.append(f"lerobot|{episode}|{digest}")
        return found


def read_source(root: Path | str) -> LeRobotSource | None:
    """A LeRobot-recorded root, read (None for a root whose info.json lists video and index columns only)."""
    if not isinstance(root, Path):
        if _remote_has_data(root):
            raise MergeError(
                f"{root}: a LeRobot-recorded dataset (its info.json lists data columns). robovid merges LeRobot-"
                "recorded roots from local folders only: copy the prefix to a local folder and merge that."
            )
        return None
    try:
        info = json.loads(info_json_path(root).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise MergeError(f"{info_json_path(root)}: unreadable ({error}).") from error
    if not isinstance(info, dict) or not data_features(info):
        return None
    episodes: dict[int, dict[str, Any]] = {}
    for path in lerobot_episodes_files(root):
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as error:
            raise MergeError(
                f"{path}: unreadable ({error}). LeRobot writes this file's footer at finalize(): finish the "
                "recording (or let lerobot-record exit), then merge."
            ) from error
        episodes.update({int(r["episode_index"]): r for r in table.to_pylist()})
    try:
        tasks = read_tasks(root)
    except LeRobotMetadataError as error:
        raise MergeError(str(error)) from error
    source = LeRobotSource(root, info, episodes, tasks)
    source.rows = segment_rows(source)
    if not source.rows:
        raise MergeError(f"{root}: LeRobot's metadata places no episode's video yet; nothing to merge.")
    return source


def _remote_has_data(url: str) -> bool:
    from robovid.remote import join, read_bytes

    data = read_bytes(join(url, "meta/info.json"))
    if data is None:
        return False
    try:
        info = json.loads(data)
    except ValueError:
        return False
    return isinstance(info, dict) and bool(data_features(info))


def segment_rows(source: LeRobotSource) -> list[SegmentRow]:
    """A segment row per (camera, episode) LeRobot's metadata places, its first frame found in the chunk file."""
    movies: dict[Path, Movie] = {}
    fps = int(source.info["fps"])
    rows = []
    for episode, row in sorted(source.episodes.items()):
        for key in source.video_keys:
            place: list[Any] = [row.get(f"videos/{key}/{name}") for name in VIDEO_COLUMNS]
            if any(value is None for value in place):
                continue  # not encoded yet (robovid-watch beside LeRobot): the episode waits
            chunk, file, start, end = int(place[0]), int(place[1]), float(place[2]), float(place[3])
            path = chunk_path(source.root, key, chunk, file)
            if path not in movies:
                try:
                    movies[path] = read_movie(path)
                except FileNotFoundError:
                    raise MergeError(
                        f"{path}: named by {source.root}'s meta/episodes (episode {episode}, {key}) but missing. "
                        "Restore the source's videos/ folder before merging."
                    ) from None
            length = int(row["length"])
            first = _frame_at(movies[path], start, length, path, episode)
            video = source.info["features"][key].get("info", {})
            stats = _stats_of(row, key)
            rows.append(
                SegmentRow(
                    episode_index=episode,
                    video_key=key,
                    chunk_index=chunk,
                    file_index=file,
                    from_timestamp=start,
                    to_timestamp=end,
                    first_frame=first,
                    num_frames=length,
                    fps=fps,
                    video_height=video.get("video.height"),
                    video_width=video.get("video.width"),
                    video_codec=video.get("video.codec"),
                    video_pix_fmt=video.get("video.pix_fmt"),
                    video_fps=video.get("video.fps"),
                    video_channels=video.get("video.channels"),
                    video_is_depth_map=video.get("video.is_depth_map"),
                    has_audio=video.get("has_audio"),
                    lerobot_stats=feature_stats_to_json(stats) if stats else None,
                )
            )
    return rows


def _frame_at(movie: Movie, start: float, length: int, path: Path, episode: int) -> int:
    """The frame of ``movie`` shown at ``start`` seconds, which must begin ``length`` frames still in the file."""
    times = movie.frame_start_ticks() / movie.media_timescale
    first = int(np.argmin(np.abs(times - start))) if times.shape[0] else -1
    if first < 0 or abs(times[first] - start) > TOLERANCE_S or first + length > movie.num_frames:
        raise MergeError(
            f"{path}: episode {episode} is placed at {start} s for {length} frames, but no frame of this file "
            f"({movie.num_frames} frames) starts there with that many after it. The source's meta/episodes does not "
            "match its video; repair it before merging."
        )
    return first


def _stats_of(row: Mapping[str, Any], feature: str) -> FeatureStats:
    return {
        key: np.asarray(row[f"stats/{feature}/{key}"])
        for key in STAT_KEYS
        if row.get(f"stats/{feature}/{key}") is not None
    }


# --- checks ----------------------------------------------------------------------------------------------


def check_like(reference: Mapping[str, Any], info: Mapping[str, Any], where: str, first: str) -> None:
    """MergeMismatchError unless ``info`` describes the same dataset shape as ``reference`` (fps, robot, features)."""
    differences = []
    for name in ("fps", "robot_type"):
        if reference.get(name) != info.get(name):
            differences.append(f"{name} {info.get(name)!r} (vs {reference.get(name)!r})")
    ours, theirs = info.get("features", {}), reference.get("features", {})
    for label, names in (("only here", set(ours) - set(theirs)), ("missing", set(theirs) - set(ours))):
        if names:
            differences.append(f"features {label}: {', '.join(sorted(names))}")
    for key in sorted(set(ours) & set(theirs)):
        for name in ("dtype", "shape", "names"):
            if ours[key].get(name) != theirs[key].get(name):
                differences.append(f"{key} {name} {ours[key].get(name)} (vs {theirs[key].get(name)})")
        for name in VIDEO_INFO_KEYS:
            a, b = (ours[key].get("info") or {}).get(name), (theirs[key].get("info") or {}).get(name)
            if a != b:
                differences.append(f"{key} {name} {a!r} (vs {b!r})")
    if differences:
        raise MergeMismatchError(
            f"{where} differs from {first}: {'; '.join(differences)}. One LeRobot dataset keeps one fps, robot type "
            "and set of features (with one video format per camera): merge robots recorded with the same settings."
        )


def reference(dest: Path) -> dict[str, Any] | None:
    """The info.json of the first LeRobot source merged into DEST (None when none was)."""
    path = lerobot_dir(dest) / "reference.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise MergeError(f"{path}: unreadable ({error}). Restore it, or merge into a new DEST.") from error


def check_sources(
    dest: Path, sources: Mapping[str, LeRobotSource | None], dest_has_episodes: bool
) -> dict[str, Any] | None:
    """MergeMismatchError unless every source, and what DEST holds, is LeRobot-recorded alike, or none is.

    Returns the info.json every LeRobot source is compared with: DEST's reference, kept by
    :func:`keep_reference` (the first LeRobot source merged), or None when none is LeRobot-recorded.
    """
    known = reference(dest)
    compared: list[tuple[str, dict[str, Any] | None]] = []
    if known is not None or dest_has_episodes:
        compared.append(("DEST (merged before)", known))
    compared += [(key, source.info if source is not None else None) for key, source in sources.items()]
    first_name, first = compared[0]
    for name, info in compared[1:]:
        if (info is None) != (first is None):
            columns = data_features(info or first or {})
            raise MergeMismatchError(
                f"{name} differs from {first_name}: one is LeRobot-recorded (data columns {', '.join(columns)}), the "
                "other holds video only. One dataset needs the same columns in every episode: merge LeRobot-recorded "
                "roots together, and video-only roots together."
            )
        if info is not None and first is not None:
            check_like(first, info, name, first_name)
    return first


def keep_reference(dest: Path, info: dict[str, Any]) -> None:
    """Keep the info.json later LeRobot sources must match, unless DEST has one (before any episode is numbered)."""
    if reference(dest) is None:
        write_bytes_durably(lerobot_dir(dest) / "reference.json", json.dumps(info, indent=1).encode())


# --- data kept in DEST -----------------------------------------------------------------------------------


def _episode_path(dest: Path, index: int) -> Path:
    return lerobot_dir(dest) / f"episode-{index:06d}.parquet"


def store_episode(dest: Path, source: LeRobotSource, episode: int, index: int) -> None:
    """Copy a source episode's data rows, its meta/episodes row and its task table into DEST, as DEST episode ``index``."""
    row = {k: v for k, v in source.episodes[episode].items() if not k.startswith(("videos/", "meta/", "data/"))}
    kept = {"source": str(source.root), "episode": episode, "tasks": source.tasks, "row": row}
    table = source.episode_data(episode)
    metadata = dict(table.schema.metadata or {}) | {b"robovid_merge": json.dumps(kept, default=list).encode()}
    with atomic_output(_episode_path(dest, index)) as temp:
        pq.write_table(table.replace_schema_metadata(metadata), temp, compression="snappy")
    fault_point("merge-lerobot:after-store")


def load_episode(dest: Path, index: int) -> tuple[pa.Table, dict[str, Any]]:
    path = _episode_path(dest, index)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise MergeError(
            f"{path}: DEST episode {index}'s LeRobot data is unreadable ({error}). Restore it from a backup, "
            "or merge into a new DEST."
        ) from error
    metadata = dict(table.schema.metadata or {})
    kept = json.loads(metadata.pop(b"robovid_merge"))
    return table.replace_schema_metadata(metadata), kept
