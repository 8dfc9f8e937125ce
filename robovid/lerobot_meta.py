"""LeRobot v3 roots: recognise them, tell which episodes LeRobot has saved, and add robovid's video columns.

A root is a LeRobot v3 dataset when ``meta/info.json`` has ``codebase_version`` ``v3.x``. LeRobot
0.4.4 (``lerobot/datasets/lerobot_dataset.py``) writes, for each ``save_episode()``:

1. the episode's statistics, reading its PNGs (``compute_episode_stats``): the *last* PNG read;
2. its rows into ``data/chunk-*/file-*.parquet`` through a ``ParquetWriter`` kept open;
3. its metadata row, buffered, into ``meta/episodes/chunk-*/file-*.parquet`` through another
   ``ParquetWriter`` that gets its footer (and becomes readable) only at ``finalize()``, at a
   file rollover, or every ``metadata_buffer_size`` episodes (flushed, still without footer);
4. ``meta/info.json`` (``total_episodes``, ``total_frames``), rewritten in place, then
   ``meta/stats.json``.

So **episode N is saved once ``total_episodes > N``**: LeRobot will not read its PNGs again
(when it does not encode videos itself). Its ``length`` is known exactly once its episodes file
is complete; before that, :func:`check_frame_counts` proves each folder's frame count from the
running ``total_frames``.

robovid writes two things into LeRobot's own files, only through :mod:`robovid.guarded_replace`:
the ``videos/{key}/chunk_index|file_index|from_timestamp|to_timestamp`` columns of each row of a
*complete* episodes file (LeRobot never writes a closed file again), and ``features[key]["info"]``
in ``info.json`` (only when LeRobot is idle: :func:`lerobot_idle`). Every LeRobot column and
value is kept as LeRobot wrote it.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from robovid.depth import DEPTH_MILLIMETER_UNIT, EXACT_DEPTH_PIX_FMT
from robovid.errors import LeRobotMetadataError
from robovid.guarded_replace import FileStamp, replace_if_unchanged
from robovid.layout import info_json_path, lerobot_episodes_files, stats_json_path

INFO_PATH = info_json_path(Path())
"""``meta/info.json``, relative to the root."""
VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
_VIDEO_COLUMN_TYPES = (pa.int64(), pa.int64(), pa.float64(), pa.float64())
IDLE_QUIET_S = 10.0
"""LeRobot counts as idle when none of its metadata files changed for this long (and all are complete)."""


@dataclass(frozen=True)
class InfoSnapshot:
    """``meta/info.json`` as read once: its content and the stamp that identifies that version."""

    data: dict[str, Any]
    stamp: FileStamp

    @property
    def total_episodes(self) -> int:
        return int(self.data.get("total_episodes", 0))

    @property
    def total_frames(self) -> int:
        return int(self.data.get("total_frames", 0))

    @property
    def is_lerobot_v3(self) -> bool:
        version = self.data.get("codebase_version")
        return isinstance(version, str) and version.startswith("v3.")

    @property
    def video_keys(self) -> list[str]:
        """Features stored as video, in the order info.json lists them."""
        features = self.data.get("features")
        if not isinstance(features, dict):
            return []
        return [key for key, ft in features.items() if isinstance(ft, dict) and ft.get("dtype") == "video"]


def read_info(root: Path) -> InfoSnapshot | None:
    """``meta/info.json``, or None when it does not exist.

    Raises LeRobotMetadataError when it is not a JSON object. LeRobot rewrites the file in
    place, so a read can catch it half-written: the caller reads it again a moment later.
    """
    path = info_json_path(root)
    try:
        with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # a FIFO would block its reader forever
                raise LeRobotMetadataError(f"{path}: not a regular file (a FIFO or a device?). Replace or remove it.")
            stamp = FileStamp.of(st)
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LeRobotMetadataError(
            f"{path}: not readable JSON ({error}). LeRobot may be rewriting it: it is read again on the next pass."
        ) from error
    if not isinstance(data, dict):
        raise LeRobotMetadataError(f"{path}: holds a JSON {type(data).__name__}, not an object. Fix or remove it.")
    return InfoSnapshot(data, stamp)


def encode_info(data: Mapping[str, Any]) -> bytes:
    """info.json bytes exactly as LeRobot writes them (``json.dump(indent=4, ensure_ascii=False)``)."""
    return json.dumps(data, indent=4, ensure_ascii=False).encode("utf-8")


# --- episodes files -----------------------------------------------------------------------


def episodes_files(root: Path) -> list[Path]:
    """``meta/episodes/chunk-*/file-*.parquet`` in (chunk, file) order."""
    return lerobot_episodes_files(root)


def read_complete(path: Path) -> tuple[pa.Table, FileStamp] | None:
    """The table of a complete Parquet file and the stamp it was read at; None while a writer has it open.

    A file whose writer has not closed it has no footer yet and does not parse; a file that
    changed during the read is treated the same way.
    """
    before = FileStamp.read(path)
    if before is None:
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid):
        return None
    return (table, before) if FileStamp.read(path) == before else None


@dataclass
class SavedEpisodes:
    """What LeRobot's metadata says about the episodes it has saved."""

    total_episodes: int
    total_frames: int
    lengths: dict[int, int] = field(default_factory=dict)
    """Exact ``length`` of each episode found in a complete episodes file."""
    open_files: list[Path] = field(default_factory=list)
    """Episodes files LeRobot has not closed yet (their rows are not readable)."""


def saved_episodes(root: Path, info: InfoSnapshot) -> SavedEpisodes:
    """Totals from info.json and the exact lengths readable from complete episodes files."""
    saved = SavedEpisodes(info.total_episodes, info.total_frames)
    for path in episodes_files(root):
        complete = read_complete(path)
        if complete is None:
            saved.open_files.append(path)
            continue
        table = complete[0]
        if "episode_index" in table.column_names and "length" in table.column_names:
            pairs = zip(table["episode_index"].to_pylist(), table["length"].to_pylist(), strict=True)
            saved.lengths.update((int(e), int(n)) for e, n in pairs)
    return saved


@dataclass(frozen=True)
class FrameCountCheck:
    """For one camera: which saved episodes' folders hold exactly LeRobot's frames."""

    ready: frozenset[int]
    """Saved, and the folder's frame count equals the episode's length."""
    mismatched: dict[int, tuple[int, int]]
    """Saved, but (frames in the folder, LeRobot's length) differ."""
    unproven: frozenset[int]
    """Saved, but the length cannot be told yet (LeRobot's episodes file is still open)."""


def check_frame_counts(
    saved: SavedEpisodes, known_lengths: Mapping[int, int], folder_counts: Mapping[int, int]
) -> FrameCountCheck:
    """Which of a camera's episode folders may be encoded as LeRobot saved them.

    ``known_lengths`` are lengths robovid already proved (its committed segments of this root,
    any camera); ``folder_counts`` the number of frames in each of this camera's folders.
    An episode's length is exact from a complete episodes file or ``known_lengths``. The
    others (U) are proved together: every folder holds at least its episode's frames (LeRobot
    wrote each one before ``save_episode``; a discarded take can only leave extra ones), so if
    the folders of U add up to ``total_frames`` minus the known lengths, each one is exact.
    """
    exact = {e: n for e, n in {**known_lengths, **saved.lengths}.items() if e < saved.total_episodes}
    ready, mismatched = set(), {}
    for episode, count in folder_counts.items():
        if episode in exact:
            if count == exact[episode]:
                ready.add(episode)
            else:
                mismatched[episode] = (count, exact[episode])
    unknown = set(range(saved.total_episodes)) - set(exact)
    remainder = saved.total_frames - sum(exact.values())
    if len(unknown) == 1:  # the one episode not known otherwise holds the rest of total_frames
        (episode,) = unknown
        if episode in folder_counts and folder_counts[episode] != remainder:
            mismatched[episode] = (folder_counts[episode], remainder)
            unknown = set()
    if unknown and unknown <= set(folder_counts) and sum(folder_counts[e] for e in unknown) == remainder:
        ready |= unknown
        unknown = set()
    return FrameCountCheck(frozenset(ready), mismatched, frozenset(unknown & set(folder_counts)))


def lerobot_idle(root: Path, info: InfoSnapshot, quiet_s: float = IDLE_QUIET_S, now: float | None = None) -> bool:
    """True when LeRobot has closed every episodes file, they hold exactly its saved episodes,
    and none of its metadata files changed for ``quiet_s`` (it finished, or pauses between sessions)."""
    files = episodes_files(root)
    indices: list[int] = []
    newest = info.stamp.mtime_ns
    for path in files:
        complete = read_complete(path)
        if complete is None:
            return False
        indices += complete[0]["episode_index"].to_pylist() if "episode_index" in complete[0].column_names else []
        newest = max(newest, complete[1].mtime_ns)
    stats = FileStamp.read(stats_json_path(root))
    newest = max(newest, stats.mtime_ns if stats else 0)
    if sorted(indices) != list(range(info.total_episodes)):
        return False
    return (now if now is not None else time.time()) - newest / 1e9 >= quiet_s


# --- robovid's columns --------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentPlace:
    """Where one committed episode of one camera lies, in LeRobot's terms."""

    chunk_index: int
    file_index: int
    from_timestamp: float
    to_timestamp: float
    num_frames: int

    def values(self) -> tuple[int, int, float, float]:
        return (self.chunk_index, self.file_index, self.from_timestamp, self.to_timestamp)


def superseded_places(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], set[tuple[int, int, float, float]]]:
    """(video_key, episode_index) -> the places of its earlier takes, from ``read_segments(root, all_takes=True)``."""
    rows = list(rows)
    current = {(r["video_key"], int(r["episode_index"])): int(r.get("take") or 0) for r in rows}
    for row in rows:
        key = (row["video_key"], int(row["episode_index"]))
        current[key] = max(current[key], int(row.get("take") or 0))
    earlier: dict[tuple[str, int], set[tuple[int, int, float, float]]] = {}
    for row in rows:
        key = (row["video_key"], int(row["episode_index"]))
        if int(row.get("take") or 0) < current[key]:
            earlier.setdefault(key, set()).add(segment_places([row])[key].values())
    return earlier


def segment_places(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], SegmentPlace]:
    """(video_key, episode_index) -> place, from segment rows (``robovid.read_segments(root).to_pylist()``)."""
    return {
        (row["video_key"], int(row["episode_index"])): SegmentPlace(
            int(row["chunk_index"]),
            int(row["file_index"]),
            float(row["from_timestamp"]),
            float(row["to_timestamp"]),
            int(row["num_frames"]),
        )
        for row in rows
    }


@dataclass
class ColumnsReport:
    """What adding robovid's columns to LeRobot's episodes files found and did."""

    written: list[Path] = field(default_factory=list)
    open_files: list[Path] = field(default_factory=list)
    """Still open in LeRobot: left alone, done on a later pass."""
    missing: list[tuple[str, int]] = field(default_factory=list)
    """(video key, episode) rows without a committed segment yet."""
    mismatched: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(video key, episode, segment frames, LeRobot length): not written."""
    conflicts: list[tuple[str, int]] = field(default_factory=list)
    """Rows where LeRobot already wrote other video values: LeRobot's are kept."""
    raced: list[Path] = field(default_factory=list)
    """Files that changed while robovid rewrote them: left as they are, tried again later."""

    @property
    def complete(self) -> bool:
        """Every row of every file has all its video columns."""
        return not (self.open_files or self.missing or self.mismatched or self.conflicts or self.raced)


def video_column_names(key: str) -> list[str]:
    return [f"videos/{key}/{name}" for name in VIDEO_COLUMNS]


def with_video_columns(
    table: pa.Table,
    video_keys: Iterable[str],
    places: Mapping[tuple[str, int], SegmentPlace],
    report: ColumnsReport,
    superseded: Mapping[tuple[str, int], set[tuple[int, int, float, float]]] | None = None,
) -> pa.Table | None:
    """``table`` with each video key's four columns filled from ``places``; None when nothing changes.

    New columns go where LeRobot puts its own (after ``dataset_to_index``); existing ones
    keep their place. A value LeRobot wrote is never replaced: only empty cells are filled,
    and cells holding an earlier take robovid wrote (``superseded``) get the current take.
    """
    superseded = superseded or {}
    episodes = [int(e) for e in table["episode_index"].to_pylist()]
    lengths = [int(n) for n in table["length"].to_pylist()]
    changed = False
    for key in video_keys:
        names = video_column_names(key)
        present = all(name in table.column_names for name in names)
        columns: list[list[Any]] = [table[name].to_pylist() if present else [None] * len(episodes) for name in names]
        filled = False
        for row, (episode, length) in enumerate(zip(episodes, lengths, strict=True)):
            place = places.get((key, episode))
            current = tuple(column[row] for column in columns)
            if place is None:
                if all(value is None for value in current):
                    report.missing.append((key, episode))
            elif place.num_frames != length:
                report.mismatched.append((key, episode, place.num_frames, length))
            elif all(value is None for value in current) or current in superseded.get((key, episode), set()):
                for column, value in zip(columns, place.values(), strict=True):
                    column[row] = value
                filled = True
            elif current != place.values():
                report.conflicts.append((key, episode))
        if filled:
            table = _put_columns(table, key, columns)
            changed = True
    return table if changed else None


def _put_columns(table: pa.Table, key: str, values: list[list[Any]]) -> pa.Table:
    names = video_column_names(key)
    position = table.column_names.index("dataset_to_index") + 1 if "dataset_to_index" in table.column_names else None
    for name, column, kind in zip(names, values, _VIDEO_COLUMN_TYPES, strict=True):
        array = pa.array(column, type=kind)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        elif position is None:
            table = table.append_column(name, array)
        else:
            table = table.add_column(_insert_at(table, key, position), name, array)
    return table


def _insert_at(table: pa.Table, key: str, after: int) -> int:
    """Just after the last ``videos/...`` column that follows ``dataset_to_index``, or right after it."""
    position = after
    while position < table.num_columns and table.column_names[position].startswith("videos/"):
        position += 1
    return position


def add_video_columns(
    root: Path,
    video_keys: Iterable[str],
    places: Mapping[tuple[str, int], SegmentPlace],
    settle_s: float = 1.0,
    superseded: Mapping[tuple[str, int], set[tuple[int, int, float, float]]] | None = None,
) -> ColumnsReport:
    """Fill the video columns of every complete episodes file; files LeRobot has open are left alone."""
    report = ColumnsReport()
    keys = list(video_keys)
    for path in episodes_files(root):
        complete = read_complete(path)
        if complete is None:
            report.open_files.append(path)
            continue
        table, stamp = complete
        updated = with_video_columns(table, keys, places, report, superseded)
        if updated is None:
            continue

        def write(temp: Path, updated: pa.Table = updated) -> None:
            pq.write_table(updated, temp, compression="snappy", use_dictionary=True)

        if replace_if_unchanged(path, stamp, write, settle_s, fault_name="lerobot-episodes"):
            report.written.append(path)
        else:
            report.raced.append(path)
    return report


def video_info(segment_row: Mapping[str, Any]) -> dict[str, Any]:
    """``features[key]["info"]``: the ``video.*`` keys and ``has_audio`` of a committed segment row.

    A depth camera's also says ``is_depth_map`` (where LeRobot looks for it first) and, for robovid's
    exact depth (``gray16le``), ``depth_unit: "mm"`` (the unit of the stored samples).
    """
    info = {k: v for k, v in segment_row.items() if (k.startswith("video.") or k == "has_audio") and v is not None}
    if info.get("video.is_depth_map"):
        info["is_depth_map"] = True
        if info.get("video.pix_fmt") == EXACT_DEPTH_PIX_FMT:
            info["depth_unit"] = DEPTH_MILLIMETER_UNIT
    return info


def has_video_info(info: object) -> bool:
    """Whether a feature's ``info`` holds robovid's (or LeRobot's) ``video.*`` entries."""
    return isinstance(info, dict) and any(str(key).startswith("video.") for key in info)


def add_video_info(
    root: Path, info: InfoSnapshot, infos: Mapping[str, Mapping[str, Any]], settle_s: float = 1.0
) -> bool | None:
    """Write ``features[key]["info"]`` for keys whose info has no ``video.*`` entry yet; None when none lacked it.

    What the feature's info already holds stays (LeRobot's current API declares a depth camera's
    feature with ``info: {"is_depth_map": True}`` before any video exists); robovid's keys are added
    beside it. False when info.json changed meanwhile (nothing lost; read it again and retry).
    """
    data = json.loads(json.dumps(info.data))
    features = data.get("features", {})
    missing = [key for key in infos if key in features and not has_video_info(features[key].get("info"))]
    if not missing:
        return None
    for key in missing:
        features[key]["info"] = dict(infos[key]) | dict(features[key].get("info") or {})
    payload = encode_info(data)
    return replace_if_unchanged(
        info_json_path(root), info.stamp, lambda temp: temp.write_bytes(payload), settle_s, "lerobot-info"
    )
