"""Where things live under a recording root (LeRobot v3 names).

- input:  ``{root}/images/{camera_key}/episode-{episode:06d}/frame-{frame:06d}.png``
- output: ``{root}/videos/{camera_key}/chunk-{chunk:03d}/file-{file:03d}.mp4``
- metadata: ``{root}/.cache/huggingface/robovid/segments/part-{n:06d}.parquet``
- the recorder's dataset description: ``{root}/meta/info.json`` (robovid reads its ``fps``)
- service state: ``{root}/.cache/huggingface/robovid/`` (``lock``, ``journal/``, ``failed/``,
  ``tmp/``, ``retakes/``, ``segments/``, ``sealed/``, ``merge/``;
  robovid-ship's ``ship/``), where ``LeRobotDataset.push_to_hub`` never uploads it;
  roots from before kept it in ``{root}/.robovid/`` and ``{root}/meta/robovid/segments/``
  (:func:`legacy_state_dir`, moved by ``robovid_watch.migrate`` at start)

Every path and file-name pattern of a root is built or parsed here, and only here.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from robovid.errors import InfoJsonError, UnsafePathError

StrPath = str | os.PathLike[str]
"""A root or folder as the public helpers take it: a ``str`` or any path-like object."""

EPISODE_DIR_RE = re.compile(r"episode-(\d{6,})")
_EPISODE_LIKE_RE = re.compile(r"episode-\d+")
CHUNK_DIR_RE = re.compile(r"chunk-(\d{3,})")
MAX_EPISODE_INDEX = 2**63 - 1
"""The largest episode index the segment table's int64 ``episode_index`` column holds."""
FILE_RE = re.compile(r"file-(\d{3,})\.mp4")
FRAME_RE = re.compile(r"frame-([0-9]{6,})\.png")
"""A frame file name; group 1 is the index. LeRobot writes ``{i:06d}``, which grows past 999999."""
_PARQUET_CHUNK_FILE_RE = re.compile(r"chunk-(\d{3,})/file-(\d{3,})\.parquet")
PART_RE = re.compile(r"part-(\d{6,})\.parquet")
"""A segments metadata part file name; group 1 is its number."""


@dataclass(frozen=True, order=True)
class ChunkLocation:
    """One chunk file of a camera: ``chunk-{chunk_index:03d}/file-{file_index:03d}.mp4``."""

    chunk_index: int
    file_index: int

    def path(self, root: StrPath, camera: str) -> Path:
        return chunk_path(root, camera, self.chunk_index, self.file_index)

    def next(self, files_per_chunk: int) -> ChunkLocation:
        """The location after this one; a new chunk folder every ``files_per_chunk`` files."""
        if self.file_index + 1 >= files_per_chunk:
            return ChunkLocation(self.chunk_index + 1, 0)
        return ChunkLocation(self.chunk_index, self.file_index + 1)


def images_dir(root: StrPath) -> Path:
    return Path(root) / "images"


def episode_dir(root: StrPath, camera: str, episode_index: int) -> Path:
    return images_dir(root) / camera / f"episode-{episode_index:06d}"


def frame_path(episode_dir: StrPath, frame_index: int) -> Path:
    """Frame ``frame_index`` of an episode folder, as the recorder names it (:data:`FRAME_RE`)."""
    return Path(episode_dir) / f"frame-{frame_index:06d}.png"


def videos_dir(root: StrPath) -> Path:
    """The cameras' chunk files, one folder per camera."""
    return Path(root) / "videos"


def chunk_path(root: StrPath, camera: str, chunk_index: int, file_index: int) -> Path:
    return videos_dir(root) / camera / f"chunk-{chunk_index:03d}" / f"file-{file_index:03d}.mp4"


def chunk_key(camera: str, location: ChunkLocation) -> str:
    """A chunk file's path relative to any root, ``/``-separated: also its key under a remote root."""
    return location.path(Path(), camera).as_posix()


def parse_chunk_path(path: StrPath) -> tuple[Path, str, ChunkLocation] | None:
    """``(root, camera, location)`` of a path shaped like a chunk file, else None."""
    path = Path(path)
    chunk, name = CHUNK_DIR_RE.fullmatch(path.parent.name), FILE_RE.fullmatch(path.name)
    if chunk is None or name is None or len(path.parents) < 4:
        return None
    root, camera = path.parents[3], path.parent.parent.name
    location = ChunkLocation(int(chunk.group(1)), int(name.group(1)))
    return (root, camera, location) if location.path(root, camera) == path else None


def state_dir(root: StrPath) -> Path:
    """robovid's own state: the root lock, the journal, failures, temp encodes and the segment table.

    ``{root}/.cache/huggingface/robovid``: the one folder of a root that huggingface_hub never
    uploads (its ``DEFAULT_IGNORE_PATTERNS``: neither ``LeRobotDataset.push_to_hub`` nor ``hf upload``
    sends it) and that neither LeRobot nor huggingface_hub deletes. ``images/``, which LeRobot's
    push also skips, is removed whole by ``lerobot-record`` when it exits with no PNG left in it.
    Roots from before this layout keep theirs in :func:`legacy_state_dir` until robovid-watch
    moves it (``robovid_watch.migrate``).
    """
    return Path(root) / ".cache" / "huggingface" / "robovid"


def segments_dir(root: StrPath) -> Path:
    """The segment table, in :func:`state_dir` (also the key prefix under a remote root)."""
    return state_dir(root) / "segments"


def existing_segments_dir(root: StrPath) -> Path:
    """Where a local root's segment table is: :func:`segments_dir`, or where a root not yet moved has it."""
    current = segments_dir(root)
    legacy = legacy_segments_dir(root)
    return legacy if not current.is_dir() and legacy.is_dir() else current


def segment_part_path(root: StrPath, number: int) -> Path:
    return segments_dir(root) / f"part-{number:06d}.parquet"


def manifest_path(root: StrPath) -> Path:
    """A remote root's manifest (written by robovid-ship): every committed file with its size and SHA-256."""
    return Path(root) / "meta" / "robovid" / "manifest.json"


def legacy_state_dir(root: StrPath) -> Path:
    """Where robovid kept its state before (uploaded by ``push_to_hub``)."""
    return Path(root) / ".robovid"


def legacy_segments_dir(root: StrPath) -> Path:
    """Where robovid kept the segment table before (uploaded by ``push_to_hub``)."""
    return Path(root) / "meta" / "robovid" / "segments"


def legacy_lock_path(root: StrPath) -> Path:
    """The lock of a robovid from before the move (held too while the state moves)."""
    return legacy_state_dir(root) / "lock"


def lock_path(root: StrPath) -> Path:
    """The service's single-instance lock (holds the holder's pid)."""
    return state_dir(root) / "lock"


def journal_dir(root: StrPath) -> Path:
    """One intent per episode being appended."""
    return state_dir(root) / "journal"


def failed_dir(root: StrPath) -> Path:
    """One record per episode that failed, with the folder state it failed on."""
    return state_dir(root) / "failed"


def deferred_dir(root: StrPath) -> Path:
    """One record per episode set aside for a fault not its own (a ``--ray`` task lost): retried by the next
    rescan or run, shown by ``robovid status``."""
    return state_dir(root) / "deferred"


def tmp_dir(root: StrPath) -> Path:
    """Encodes too large for memory, while they are verified."""
    return state_dir(root) / "tmp"


def streams_dir(root: StrPath) -> Path:
    """Episodes a recorder streamed in-process (:class:`robovid.StreamingVideoEncoder` with ``handoff=True``)."""
    return state_dir(root) / "streams"


def stream_dir(root: StrPath, camera: str, episode_index: int) -> Path:
    """One streamed episode's handoff folder: its closed video segments, fingerprints and crash log."""
    return streams_dir(root) / camera / f"episode-{episode_index:06d}"


def sealed_dir(root: StrPath) -> Path:
    """Seal records: one per chunk file robovid-watch has finished and will never write again."""
    return state_dir(root) / "sealed"


def ship_dir(root: StrPath) -> Path:
    """robovid-ship's state: the folder is its lock (flock on a held descriptor), with ``pid`` and ``files/``."""
    return state_dir(root) / "ship"


def ship_records_dir(root: StrPath) -> Path:
    """robovid-ship's journal: one record per sealed file (shipped, committed, pruned)."""
    return ship_dir(root) / "files"


def retakes_dir(root: StrPath) -> Path:
    """One request per episode a user asked to replace with the take now in its folder (``robovid retake``)."""
    return state_dir(root) / "retakes"


def quarantine_dir(root: StrPath) -> Path:
    """robovid's own state records it could not read (damaged, or written by another version), set aside."""
    return state_dir(root) / "quarantine"


def inflight_dir(root: StrPath) -> Path:
    """One marker per episode robovid-watch is working on right now (removed when its attempt ends)."""
    return state_dir(root) / "inflight"


def crashes_dir(root: StrPath) -> Path:
    """Episodes in flight when robovid-watch crashed natively (one record each), and the kept crash logs."""
    return state_dir(root) / "crashes"


def crash_file_path(root: StrPath) -> Path:
    """Where a running robovid-watch's ``faulthandler`` writes the tracebacks of a native crash (segfault, abort)."""
    return state_dir(root) / "crash.log"


def lerobot_export_marker(root: StrPath) -> Path:
    """Present once robovid exported the root as a LeRobot dataset: its info.json is robovid's, not a recorder's."""
    return state_dir(root) / "lerobot-export"


def merge_dir(root: StrPath) -> Path:
    """``robovid merge``'s state in a merged root: the episode numbering (``episodes.json``) and one intent per append."""
    return state_dir(root) / "merge"


def parse_episode_dir(name: str) -> int | None:
    """The episode index of a folder named exactly as :func:`episode_dir` names it, else None.

    Only the canonical spelling ``episode-{index:06d}`` counts (``episode-1000000`` and up: the
    digits with no leading zero): ``episode-0000007`` or ``episode-007`` are not episode 7, so two
    folders can never both be one episode. :func:`is_episode_like` tells such names apart.
    """
    match = EPISODE_DIR_RE.fullmatch(name)
    if match is None:
        return None
    index = int(match.group(1))
    return index if match.group(1) == f"{index:06d}" else None


def is_episode_like(name: str) -> bool:
    """``episode-`` and digits, but not the canonical spelling (:func:`parse_episode_dir` gives None)."""
    return _EPISODE_LIKE_RE.fullmatch(name) is not None and parse_episode_dir(name) is None


def list_chunks(root: StrPath, camera: str) -> list[ChunkLocation]:
    """The camera's chunk files, in order (temp files and strays ignored)."""
    found: list[ChunkLocation] = []
    for chunk_index, chunk_dir in _chunk_dirs(videos_dir(root) / camera):
        for file_entry in os.scandir(chunk_dir):
            file_match = FILE_RE.fullmatch(file_entry.name)
            if file_match and file_entry.is_file(follow_symlinks=False):
                found.append(ChunkLocation(chunk_index, int(file_match.group(1))))
    return sorted(found)


def list_cameras(root: StrPath) -> list[str]:
    """The cameras that have a folder of chunk files, sorted."""
    base = videos_dir(root)
    if not base.is_dir():
        return []
    return sorted(entry.name for entry in os.scandir(base) if entry.is_dir())


def chunk_dirs(root: StrPath) -> list[Path]:
    """Every ``chunk-NNN`` folder of every camera (where a killed run may leave temp files)."""
    return [path for camera in list_cameras(root) for _, path in _chunk_dirs(videos_dir(root) / camera)]


def _chunk_dirs(camera_dir: Path) -> list[tuple[int, Path]]:
    """The ``chunk-NNN`` folders of one camera with their index; none when it has no folder.

    A symlink to a folder counts, as for ``videos/`` and a camera's folder: a chunk folder moved to
    another disk with a link left behind still holds the files its rows name.
    """
    if not camera_dir.is_dir():
        return []
    found = []
    for entry in os.scandir(camera_dir):
        match = CHUNK_DIR_RE.fullmatch(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), Path(entry.path)))
    return found


def info_json_path(root: StrPath) -> Path:
    """LeRobot's dataset description, written by the recorder (robovid reads its ``fps``)."""
    return Path(root) / "meta" / "info.json"


LEROBOT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
"""LeRobot v3's per-frame data files, relative to the root (info.json's ``data_path``)."""
LEROBOT_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
"""info.json's ``video_path``: what :func:`chunk_path` builds."""
LEROBOT_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
"""LeRobot v3's episodes files (one row per episode), relative to the root."""


def lerobot_episodes_dir(root: StrPath) -> Path:
    return Path(root) / "meta" / "episodes"


def lerobot_episodes_files(root: StrPath) -> list[Path]:
    """LeRobot's episodes files that exist (``meta/episodes/chunk-*/file-*.parquet``), in (chunk, file) order."""
    base = lerobot_episodes_dir(root)
    found = []
    for path in base.glob("chunk-*/file-*.parquet"):
        match = _PARQUET_CHUNK_FILE_RE.fullmatch(path.relative_to(base).as_posix())
        if match:
            found.append(((int(match.group(1)), int(match.group(2))), path))
    return [path for _, path in sorted(found)]


def stats_json_path(root: StrPath) -> Path:
    """LeRobot's dataset statistics."""
    return Path(root) / "meta" / "stats.json"


def tasks_path(root: StrPath) -> Path:
    """LeRobot's task table."""
    return Path(root) / "meta" / "tasks.parquet"


def lerobot_dirs(root: StrPath) -> list[Path]:
    """The folders of LeRobot's files robovid replaces (where a killed run may leave temp files)."""
    root = Path(root)
    return [root / "meta", *sorted(lerobot_episodes_dir(root).glob("chunk-*")), *sorted(root.glob("data/chunk-*"))]


def read_fps(root: StrPath, default: int) -> int:
    """``fps`` from ``meta/info.json`` when the file exists, else ``default``."""
    info_path = info_json_path(root)
    if not info_path.exists():
        return default
    try:
        with open(info_path, "rb", opener=lambda path, flags: os.open(path, flags | os.O_NONBLOCK)) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # a FIFO would block the service forever
                raise InfoJsonError(f"{info_path}: not a regular file (a FIFO or a device?). Replace or remove it.")
            info = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InfoJsonError(f"{info_path}: not readable JSON ({error}). Fix or remove it.") from error
    fps = info.get("fps", default) if isinstance(info, dict) else None
    if isinstance(fps, float) and fps.is_integer():
        fps = int(fps)
    if not isinstance(fps, int) or isinstance(fps, bool) or not 1 <= fps <= 1000:
        raise InfoJsonError(f"{info_path}: 'fps' is {fps!r}; it must be a whole number from 1 to 1000.")
    return fps


def check_inside(path: StrPath, root: StrPath, what: str) -> None:
    """UnsafePathError unless ``path`` resolves (through every symlink) to ``root`` or a place under it.

    ``what`` names the path in the message ("Episode folder", "Frame").
    """
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real, real_root]) != real_root:
        raise UnsafePathError(
            f"{what} {path} resolves to {real}, outside the recording root {real_root} (through a "
            "symlink?). robovid reads only inside the root: copy the data there instead of linking."
        )
