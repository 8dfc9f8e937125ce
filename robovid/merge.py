"""Merge several robots' roots into one dataset: episodes renumbered, video appended in place, offsets exact.

``merge_roots(dest, [src, ...])`` (``robovid merge DEST SRC...``). Each SRC is a root robovid
made (its segment table names every episode's frames), a local folder or the prefix robovid-ship
uploaded it to (an fsspec URL, read by range requests: :mod:`robovid.remote`), or a local root
LeRobot recorded (data columns such as ``observation.state``; :mod:`robovid.merge_lerobot`: its
episodes' video is found from LeRobot's metadata, its data rows are kept and renumbered). DEST is
a local root only merges write. Sources of both kinds, or unlike each other, are refused
(:class:`~robovid.errors.MergeMismatchError`) before anything moves.

- **Numbering.** Sources in the order given, each one's episodes in index order: every (source,
  episode) not numbered yet gets the next index after the highest DEST holds. The numbering is
  written durably to ``DEST/.cache/huggingface/robovid/merge/episodes.json`` before any video
  moves, so a rerun gives every episode the number it had, and episodes a source gained since
  continue after the highest. An episode is merged once all its cameras are committed in SRC.
- **Video.** The frames of each run of consecutive episodes in one source chunk file are
  appended by stream copy (:func:`robovid.append.append_movie`: in place, nothing DEST holds is
  rewritten, no re-encode) to the camera's last DEST file; a new DEST file starts past the size
  limit or when the codec setup differs. Every take a source keeps is merged (its rows keep their
  ``take``). Rows get DEST's location and the offsets DEST's own integer timestamps give.
- **Crash safety**, per append: (1) an intent (DEST file, its frame count before, the rows) written
  durably; (2) the append, crash-safe by itself; (3) the rows committed; (4) the intent removed.
  A run first resolves what a killed one left: a DEST file still at its count before -> nothing
  happened (done again below); at before + the run's frames -> the missing rows are committed.
  A row in DEST's table is what says an episode is merged, so a rerun appends nothing twice.
- **Locks.** DEST's root lock (the flock on the root folder robovid-watch holds) is taken
  exclusively, each local SRC's shared: a source a robovid process writes (robovid-watch,
  ``robovid process``/``compact``) is refused, and robovid-watch cannot start on a source while a
  merge reads it. A remote prefix holds only committed files robovid-ship never rewrites; it is not
  locked. Sources are only read.
- Then DEST's LeRobot v3 metadata (info.json, data, episodes, tasks, stats) is written from its
  segment table (:mod:`robovid.lerobot_export`, info.json last).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from robovid import _merge_lerobot_files, merge_lerobot
from robovid._merge_journal import Run, append_run, clear_stale_temp_files, recover, root_lock
from robovid.durable import make_dirs_durably, write_bytes_durably
from robovid.errors import MergeError
from robovid.layout import lerobot_export_marker, merge_dir, sealed_dir, ship_dir
from robovid.lerobot_export import export_dataset, exportable
from robovid.lerobot_tasks import episode_tasks
from robovid.metadata import SegmentRow, read_segments
from robovid.remote import as_root, chunk_location, is_url

DEFAULT_FILE_SIZE_MB = 200.0
"""A new DEST file starts once the camera's last one would pass this size (LeRobot's video_files_size_in_mb)."""


@dataclass
class MergeReport:
    """What one merge run did."""

    appends: int = 0
    rows_committed: int = 0
    frames_appended: int = 0
    recovered: int = 0
    """Interrupted appends of a killed run this one finished."""
    episodes: dict[str, dict[int, int]] = field(default_factory=dict)
    """Source -> its episode index -> DEST's (every episode numbered so far, this run's and earlier)."""
    waiting: list[str] = field(default_factory=list)
    """Source episodes not merged because a camera of theirs is not committed in the source yet."""
    lerobot_episodes: int = 0
    """Episodes DEST's LeRobot metadata describes."""


def merge_roots(
    dest: Path | str,
    sources: Sequence[Path | str],
    *,
    task: str | None = None,
    file_size_mb: float = DEFAULT_FILE_SIZE_MB,
    progress: Callable[[int, int], None] | None = None,
) -> MergeReport:
    """Merge ``sources`` into ``dest`` (see the module docstring); safe to rerun, also after a crash.

    ``task`` is the LeRobot task of every merged episode (default: the sources' own, when they
    agree). ``progress(frames_done, frames_total)`` is called after each append.
    """
    dest = Path(dest)
    roots = [as_root(s) for s in sources]
    keys = [str(r).rstrip("/") if is_url(r) else os.path.realpath(r) for r in roots]
    if len(set(keys)) != len(keys) or os.path.realpath(dest) in keys:
        raise MergeError(f"robovid merge {dest} {' '.join(map(str, sources))}: a root is named twice; name each once.")
    make_dirs_durably(dest)
    report = MergeReport()
    with contextlib.ExitStack() as locks:
        locks.enter_context(root_lock(dest, exclusive=True))
        for root in roots:
            if not is_url(root):  # a remote prefix holds committed files only: robovid-ship never rewrites one
                locks.enter_context(root_lock(Path(root), exclusive=False))
        _check_dest(dest)
        clear_stale_temp_files(dest)
        report.recovered = recover(dest)
        recorded = {key: merge_lerobot.read_source(root) for key, root in zip(keys, roots, strict=True)}
        tables = {
            key: source.rows if source is not None else _source_rows(root)
            for (key, source), root in zip(recorded.items(), roots, strict=True)
        }
        numbering = _Numbering.load(dest)
        merged = [SegmentRow.from_record(r) for r in read_segments(dest).to_pylist()]
        info = merge_lerobot.check_sources(dest, recorded, dest_has_episodes=any(numbering.episodes.values()))
        _check_alike(tables, merged, numbering.cameras, f"{dest} (merged before)")
        if info is not None:
            merge_lerobot.keep_reference(dest, info)
        lerobot = {key: source for key, source in recorded.items() if source is not None}

        def store(key: str, episode: int, index: int) -> None:
            if key in lerobot:  # its data rows, kept in DEST before the numbering that names them is saved
                merge_lerobot.store_episode(dest, lerobot[key], episode, index)

        identities = {key: source.identity() for key, source in lerobot.items()}
        report.waiting = numbering.number(dest, tables, dict(zip(keys, roots, strict=True)), identities, store)
        report.episodes = {key: dict(mapping) for key, mapping in numbering.episodes.items()}
        runs = _plan(dest, tables, numbering)
        total, done = sum(r.count for r in runs), 0
        for run in runs:
            report.rows_committed += append_run(dest, run, file_size_mb)
            report.appends += 1
            report.frames_appended += run.count
            done += run.count
            if progress is not None:
                progress(done, total)
        report.lerobot_episodes = _export(dest, numbering, task, file_size_mb)
    return report


def _check_dest(dest: Path) -> None:
    """MergeError for a DEST robovid-watch or robovid-ship has worked on: merge appends to DEST's files."""
    for folder, what in ((sealed_dir(dest), "finished (sealed)"), (ship_dir(dest), "shipped")):
        if folder.is_dir() and any(folder.iterdir()):
            raise MergeError(
                f"{dest} holds chunk files robovid-watch {what} ({folder}): robovid merge appends to DEST's files, "
                "which a finished or shipped file must never see. Merge into a root only merges write (a new DEST)."
            )


# --- sources ---------------------------------------------------------------------------------------------


def _source_rows(root: Path | str) -> list[SegmentRow]:
    """Every committed row (all takes) of a source, after checking it is a root robovid can merge."""
    if not is_url(root) and not Path(root).is_dir():
        raise MergeError(f"{root}: no such folder. Name a robot's recording root (the folder that holds videos/).")
    rows = [SegmentRow.from_record(r) for r in read_segments(root, all_takes=True).to_pylist()]
    if not rows:
        raise MergeError(f"{root}: no committed episode (its segment table is empty or absent); nothing to merge.")
    return rows


def _check_alike(
    tables: dict[str, list[SegmentRow]], merged: list[SegmentRow], merged_cameras: list[str], dest: str
) -> None:
    """MergeError unless the sources and what DEST holds make one LeRobot dataset: one fps, the same cameras
    (``merged_cameras``: those of the sources numbered before), one frame size per camera."""
    cameras: dict[str, set[str]] = {key: {r.video_key for r in rows} for key, rows in tables.items()}
    if merged_cameras:
        cameras = {dest: set(merged_cameras), **cameras}
    first_key, first = next(iter(cameras.items()))
    for key, found in cameras.items():
        if found != first:
            raise MergeError(
                f"{key} has cameras {sorted(found)}, {first_key} has {sorted(first)}: one dataset needs the same "
                "cameras in every episode. Merge robots with the same cameras."
            )
    seen: dict[tuple[str, str], tuple[object, str]] = {}
    for key, rows in ({dest: merged, **tables} if merged else tables).items():
        for row in rows:
            for what, value in (
                ("fps", row.fps),
                (f"frame size of camera {row.video_key!r}", (row.video_width, row.video_height)),
            ):
                earlier = seen.setdefault((what, row.video_key if what != "fps" else ""), (value, key))
                if earlier[0] != value:
                    raise MergeError(
                        f"{key} has {what} {value}, {earlier[1]} has {earlier[0]}: one LeRobot dataset keeps one. "
                        "Merge robots recorded with the same settings."
                    )


# --- numbering -------------------------------------------------------------------------------------------


@dataclass
class _Numbering:
    episodes: dict[str, dict[int, int]]
    """source -> its episode index -> DEST episode index."""
    identities: dict[str, list[str]]
    """source -> identities of its first rows (camera, episode, take, commit time), to spot a source moved."""
    tasks: dict[int, list[str]] = field(default_factory=dict)
    """DEST episode -> its LeRobot tasks in its source (none for a source without LeRobot metadata)."""
    cameras: list[str] = field(default_factory=list)
    """The cameras of every merged episode (the sources' at the first merge)."""

    @classmethod
    def load(cls, dest: Path) -> _Numbering:
        path = merge_dir(dest) / "episodes.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            episodes = {k: {int(e): int(d) for e, d in v.items()} for k, v in data["episodes"].items()}
            tasks = {int(e): [str(t) for t in v] for e, v in data.get("tasks", {}).items()}
            cameras = [str(c) for c in data.get("cameras", [])]
            return cls(episodes, {k: list(v) for k, v in data["identities"].items()}, tasks, cameras)
        except FileNotFoundError:
            return cls({}, {})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise MergeError(
                f"{path}: unreadable ({error}). Restore it from a backup, or merge into a new DEST."
            ) from error

    def save(self, dest: Path) -> None:
        data = {
            "episodes": {k: {str(e): d for e, d in sorted(v.items())} for k, v in self.episodes.items()},
            "identities": self.identities,
            "tasks": {str(e): v for e, v in sorted(self.tasks.items())},
            "cameras": self.cameras,
        }
        write_bytes_durably(merge_dir(dest) / "episodes.json", json.dumps(data, indent=1).encode())

    def number(
        self,
        dest: Path,
        tables: dict[str, list[SegmentRow]],
        sources: dict[str, Path | str],
        identities: dict[str, list[str]],
        store: Callable[[str, int, int], None],
    ) -> list[str]:
        """Number every complete source episode not numbered yet (saved before any video moves); the incomplete.

        ``identities``: a source's identity when its rows carry none (a LeRobot-recorded root);
        ``store(source, episode, index)`` is called for each episode numbered, before the numbering is saved.
        """
        used = [d for mapping in self.episodes.values() for d in mapping.values()]
        used += read_segments(dest, all_takes=True)["episode_index"].to_pylist()
        next_index = max(used, default=-1) + 1
        cameras = {r.video_key for rows in tables.values() for r in rows}
        waiting, changed = [], not self.cameras
        self.cameras = sorted(cameras)
        for key, rows in tables.items():
            identity = (
                identities.get(key)
                or sorted(f"{r.video_key}|{r.episode_index}|{r.take}|{r.committed_at}" for r in rows)[:8]
            )
            for other, known in self.identities.items():
                if other != key and set(identity) & set(known):
                    raise MergeError(
                        f"{key} holds episodes merged before from {other} (the same commit times or data): it is "
                        f"that robot's root under another path. Merge it as {other}."
                    )
            if key not in self.identities:
                self.identities[key], changed = identity, True
            mapping = self.episodes.setdefault(key, {})
            tasks = {} if is_url(sources[key]) else episode_tasks(Path(sources[key]))
            current: dict[int, set[str]] = {}
            for row in rows:
                current.setdefault(row.episode_index, set()).add(row.video_key)
            for episode in sorted(current):
                if episode in mapping:
                    continue
                if current[episode] != cameras:
                    waiting.append(
                        f"{key} episode {episode}: camera(s) {sorted(cameras - current[episode])} not committed"
                    )
                    continue
                store(key, episode, next_index)
                mapping[episode], self.tasks[next_index] = next_index, tasks.get(episode, [])
                next_index, changed = next_index + 1, True
        if changed:
            self.save(dest)
        return waiting


def _plan(dest: Path, tables: dict[str, list[SegmentRow]], numbering: _Numbering) -> list[Run]:
    """The appends still to do: rows not in DEST yet, as runs of consecutive frames of one source file."""
    done = {(r["video_key"], r["episode_index"], r["take"]) for r in read_segments(dest, all_takes=True).to_pylist()}
    runs: list[Run] = []
    for key, rows in tables.items():
        mapping = numbering.episodes[key]
        by_file: dict[tuple[str, int, int], list[SegmentRow]] = {}
        for row in rows:
            assert row.chunk_index is not None and row.file_index is not None and row.first_frame is not None
            if row.episode_index in mapping and (row.video_key, mapping[row.episode_index], row.take) not in done:
                by_file.setdefault((row.video_key, row.chunk_index, row.file_index), []).append(row)
        for (camera, chunk, file), file_rows in sorted(by_file.items()):
            source_file = str(chunk_location(as_root(key), camera, chunk, file))
            group: list[SegmentRow] = []
            for row in sorted(file_rows, key=lambda r: r.first_frame or 0):
                if group and (group[-1].first_frame or 0) + group[-1].num_frames != row.first_frame:
                    runs.append(_new_run(key, camera, source_file, group, mapping))
                    group = []
                group.append(row)
            runs.append(_new_run(key, camera, source_file, group, mapping))
    return runs


def _new_run(key: str, camera: str, source_file: str, rows: list[SegmentRow], mapping: dict[int, int]) -> Run:
    first = rows[0].first_frame or 0
    renumbered = [SegmentRow.from_record(r.to_record() | {"episode_index": mapping[r.episode_index]}) for r in rows]
    count = sum(r.num_frames for r in rows)
    return Run(key, camera, source_file, first, count, [r.to_json() for r in renumbered])


# --- LeRobot metadata ------------------------------------------------------------------------------------


def _export(dest: Path, numbering: _Numbering, task: str | None, file_size_mb: float) -> int:
    """Write DEST's LeRobot v3 files for every episode 0..N-1 it holds; the number of episodes.

    Each episode keeps its source's task (its one LeRobot task; "" for a source without LeRobot
    metadata) unless ``task`` names one for all.
    """
    rows = read_segments(dest).to_pylist()
    if merge_lerobot.reference(dest) is not None:
        _mark_exported(dest)
        return _merge_lerobot_files.export(dest, rows, task, file_size_mb)
    episodes, stopped = exportable(dest, rows)
    if stopped:
        raise MergeError(f"{dest}: the merged episodes cannot make one LeRobot dataset: {stopped}.")
    if not episodes:
        return 0
    texts: list[str] = []
    if task is not None:
        texts = [task]
    else:
        for index, episode in enumerate(episodes):
            own = numbering.tasks.get(episode.index, [])
            if len(own) > 1:
                raise MergeError(
                    f"DEST episode {episode.index} has {len(own)} LeRobot tasks in its source ({own}); robovid merge "
                    "keeps one task per episode: name one for all with task=... (robovid merge --task TEXT)."
                )
            text = own[0] if own else ""
            if text not in texts:
                texts.append(text)
            episodes[index] = dataclasses.replace(episode, task_index=texts.index(text))
    _mark_exported(dest)
    export_dataset(dest, episodes, fps=int(rows[0]["fps"]), task=texts, video_files_size_in_mb=file_size_mb)
    return len(episodes)


def _mark_exported(dest: Path) -> None:
    make_dirs_durably(lerobot_export_marker(dest).parent)
    if not lerobot_export_marker(dest).exists():
        write_bytes_durably(lerobot_export_marker(dest), b"robovid merge exported this root as a LeRobot v3 dataset\n")
