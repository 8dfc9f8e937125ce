"""``robovid convert SRC DEST [--ray [ADDRESS]]``: a LeRobot v2.1 archive of per-episode MP4s into chunked files.

SRC is a LeRobot v2.1 dataset: ``meta/info.json`` (``fps``, ``video_path`` such as
``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4``, ``chunks_size``,
the video features) and ``meta/episodes.jsonl`` (``episode_index``, ``length``). SRC is only read.
Each episode of each camera lands in DEST (a robovid root) through the service's own stages —
journal intent -> in-place append -> commit (:func:`robovid_watch.stages.append`,
:func:`~robovid_watch.stages.commit`), with :func:`~robovid_watch.stages.recover_intents` at
start under DEST's root lock — so a kill -9 anywhere loses nothing and a rerun appends nothing
twice; each row's offsets are read from the chunk file itself after its append.

- **Copied** when the episode MP4 is one that robovid can append (one video track, a movie box
  robovid reads): its samples go byte for byte into the camera's current DEST file, or into a
  new DEST file when its codec setup differs from that file's (:func:`~robovid_watch.stages.append`).
- **Re-encoded** otherwise (an audio track, a layout robovid cannot append, frames not shown
  exactly every ``1 / fps`` s of the archive's fps: a camera that dropped frames, another rate):
  decoded and encoded with DEST's ``ROBOVID_*`` settings, frame ``i`` at ``i / fps`` as its row's
  timestamps say (``robovid.reencode``), then verified against the decoded source (frame count,
  every decoded frame, PSNR of sampled frames) — as a Ray task with ``--ray``.

Every episode's frame count must equal its ``length`` in ``episodes.jsonl``, or it is not taken
(named in the report; the others go on).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
import structlog

from robovid._faults import fault_point
from robovid._movie import Movie, read_movie
from robovid.errors import EpisodeError, RobovidError, VideoFormatError
from robovid.layout import episode_dir
from robovid.metadata import SegmentRow, SegmentStore
from robovid.probe import get_video_info
from robovid.settings import EncoderSettings
from robovid.verify import verify_video

from .config import Settings
from .discover import EpisodeRef
from .errors import ArchiveError
from .rows import commit
from .stages import Context, append, recover_intents
from .state import RootState

log = structlog.get_logger("robovid_watch")

VERIFY_EVERY = 10
"""A re-encoded episode is compared with its source by PSNR on every 10th frame, and the last."""


@dataclass(frozen=True)
class ArchiveEpisode:
    """One episode of one camera in the archive."""

    episode: int
    video_key: str
    path: Path
    length: int


@dataclass
class ConvertReport:
    copied: int = 0
    reencoded: int = 0
    already_done: int = 0
    failed: list[str] = field(default_factory=list)


def archive_episodes(src: Path) -> tuple[int, list[ArchiveEpisode]]:
    """The archive's fps and its episodes (by episode, then camera in info.json's order)."""
    try:
        info = json.loads((src / "meta" / "info.json").read_text(encoding="utf-8"))
        lines = (src / "meta" / "episodes.jsonl").read_text(encoding="utf-8").splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        template, fps = str(info["video_path"]), int(info["fps"])
        chunks_size = int(info.get("chunks_size", 1000))
        keys = [k for k, ft in info["features"].items() if isinstance(ft, dict) and ft.get("dtype") == "video"]
        episodes = sorted((int(e["episode_index"]), int(e["length"])) for e in entries)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ArchiveError(
            f"{src}: not a LeRobot v2.1 archive robovid can read ({type(error).__name__}: {error}). It needs "
            "meta/info.json (fps, video_path, features) and meta/episodes.jsonl (episode_index, length)."
        ) from error
    found = []
    for index, length in episodes:
        for key in keys:
            relative = template.format(episode_chunk=index // chunks_size, video_key=key, episode_index=index)
            found.append(ArchiveEpisode(index, key, src / relative, length))
    return fps, found


Runner = Callable[..., Any]
"""Runs ``fn(*args)`` and returns its result: here (``fn(*args)``), or as a Ray task (RayOffload.call)."""


def convert_archive(src: Path, settings: Settings, runner: Runner | None = None) -> ConvertReport:
    """Land every archive episode not in DEST (``settings.root``) yet, under DEST's root lock; see the module docstring."""
    fps, episodes = archive_episodes(src)
    dest = settings.root
    state = RootState(dest)
    state.acquire_lock()
    try:
        ctx = _context(settings, state)
        recover_intents(ctx)
        report = ConvertReport()
        todo = [e for e in episodes if (e.video_key, e.episode) not in ctx.done]
        report.already_done = len(episodes) - len(todo)
        run = runner or (lambda fn, *args: fn(*args))
        with ThreadPoolExecutor(settings.workers, thread_name_prefix="robovid-convert") as pool:
            for episode, future in _prepared(pool, todo, 2 * settings.workers, fps, ctx, run):
                try:  # landed in archive order; the next few are prepared meanwhile
                    reencoded = _land(ctx, episode, fps, future.result())
                except (RobovidError, OSError) as error:  # TruncatedVideoError: a file shorter than its table
                    report.failed.append(f"{episode.path}: {type(error).__name__}: {error}")
                    log.error("episode_failed", camera=episode.video_key, episode=episode.episode, reason=str(error))
                    continue
                if reencoded:
                    report.reencoded += 1
                else:
                    report.copied += 1
        return report
    finally:
        state.release_lock()


def _prepared(
    pool: ThreadPoolExecutor, todo: list[ArchiveEpisode], ahead: int, fps: int, ctx: Context, run: Runner
) -> Iterator[tuple[ArchiveEpisode, Future[Reencoded | None]]]:
    """Each episode with its preparation, in order, at most ``ahead`` in flight: a re-encoded episode's bytes are
    held from its preparation to its landing only (an archive's worth of them would not fit in memory)."""
    pending: deque[tuple[ArchiveEpisode, Future[Reencoded | None]]] = deque()
    for episode in todo:
        pending.append((episode, pool.submit(_prepare, episode, fps, ctx.encoder, ctx.min_psnr_db, run)))
        if len(pending) >= ahead:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


def _context(settings: Settings, state: RootState) -> Context:
    store = SegmentStore(settings.root)
    return Context(
        root=settings.root,
        state=state,
        store=store,
        encoder=settings.encoder_settings(),
        max_frame_pixels=settings.max_frame_pixels,
        file_size_limit_bytes=int(settings.video_file_size_mb * 1024 * 1024),
        files_per_chunk=settings.chunk_size,
        min_psnr_db=settings.min_psnr_db,
        marker=settings.complete_marker,
        stop=threading.Event(),
        done=store.keys(),
        takes=store.takes(),
    )


def _prepare(
    episode: ArchiveEpisode, fps: int, encoder: EncoderSettings, min_psnr_db: float, run: Runner
) -> Reencoded | None:
    """None when SRC's own file can be appended as it is, else the episode re-encoded and verified."""
    try:
        with av.open(str(episode.path)) as container:
            single_video = len(container.streams) == 1 and len(container.streams.video) == 1
        movie = read_movie(episode.path) if single_video else None
    except (av.error.FFmpegError, VideoFormatError):
        movie = None
    except FileNotFoundError as error:
        raise EpisodeError(f"{episode.path}: missing from the archive (meta/episodes.jsonl lists it).") from error
    if movie is not None and _evenly_timed(movie, fps):
        _check_length(episode, movie.num_frames)
        _check_whole(episode, movie)
        return None
    reencoded: Reencoded = run(reencode_episode, episode, fps, encoder, min_psnr_db)
    return reencoded


def _evenly_timed(movie: Movie, fps: int) -> bool:
    """True when every frame lasts exactly ``1 / fps`` s: a row's ``from_timestamp + i / fps`` is then frame ``i``.
    Anything else (gaps where a camera dropped frames, another rate) is re-timed by a re-encode."""
    durations = movie.table.durations
    return bool(durations.size and (durations.astype(np.int64) * fps == movie.media_timescale).all())


@dataclass(frozen=True)
class Reencoded:
    """An episode re-encoded with DEST's settings and verified against its source."""

    video: bytes
    min_psnr_db: float
    encode_s: float
    verify_s: float


def reencode_episode(episode: ArchiveEpisode, fps: int, encoder: EncoderSettings, min_psnr_db: float) -> Reencoded:
    """Decode, encode with DEST's settings, verify against the decoded source (a Ray task with --ray)."""
    from robovid.encoder_config import RGBEncoderConfig
    from robovid.reencode import reencode_at_rate

    config = RGBEncoderConfig(
        vcodec=encoder.vcodec,
        pix_fmt=encoder.pix_fmt,
        g=encoder.g,
        crf=encoder.crf,
        preset=encoder.preset,
        fast_decode=encoder.fast_decode,
        extra_options=dict(encoder.extra_options),
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="robovid-convert-") as scratch:
        out = Path(scratch) / "episode.mp4"
        reencode_at_rate(episode.path, out, config.to_settings(1), Fraction(fps))  # frame i at i / fps
        data = out.read_bytes()
    encoded = time.perf_counter()
    count, references = _sampled_frames(episode)
    _check_length(episode, count)
    fault_point("convert:reencoded")
    report = verify_video(io.BytesIO(data), count, references, min_psnr_db)
    return Reencoded(data, report.min_psnr_db, encoded - started, time.perf_counter() - encoded)


def _sampled_frames(episode: ArchiveEpisode) -> tuple[int, dict[int, Any]]:
    """The source's frame count, and every VERIFY_EVERY-th decoded frame and the last (RGB) by index."""
    kept: dict[int, Any] = {}
    count, last = 0, None
    with av.open(str(episode.path)) as source:
        for index, frame in enumerate(source.decode(source.streams.video[0])):
            last = frame.to_ndarray(format="rgb24")
            if index % VERIFY_EVERY == 0:
                kept[index] = last
            count = index + 1
    if last is not None:
        kept[count - 1] = last
    return count, kept


def _check_length(episode: ArchiveEpisode, frames: int) -> None:
    if frames != episode.length:
        raise EpisodeError(
            f"{episode.path}: holds {frames} frames, meta/episodes.jsonl says {episode.length}. The episode was "
            "not converted: fix the archive's metadata or the video."
        )


def _check_whole(episode: ArchiveEpisode, movie: Movie) -> None:
    """EpisodeError unless the file holds every byte its sample table points at (a copy cut short keeps its table
    when the movie box is at the start)."""
    end = max((offset + length for offset, length in movie.sample_runs()), default=0)
    size = episode.path.stat().st_size
    if end > size:
        raise EpisodeError(
            f"{episode.path}: cut short: its samples run to byte {end}, the file has {size}. The episode was not "
            "converted: copy the file again from where it came from."
        )


def _land(ctx: Context, episode: ArchiveEpisode, fps: int, video: Reencoded | None) -> bool:
    """Journal, append, commit: the service's own stages, one writer per camera file; SRC is never touched.

    True when the episode was re-encoded (``video``), False when SRC's file was copied."""
    # DEST's (absent) episode folder, as recovery names it: never SRC's, which nothing here deletes from
    ref = EpisodeRef(episode.episode, episode.video_key, episode_dir(ctx.root, episode.video_key, episode.episode))
    with _episode_file(episode, video) as temp:
        size = temp.seek(0, io.SEEK_END)
        row = SegmentRow.from_video_info(
            get_video_info(temp),
            episode_index=episode.episode,
            video_key=episode.video_key,
            num_frames=episode.length,
            fps=fps,
            video_bytes=size,
            source_bytes=episode.path.stat().st_size,
            encode_s=None if video is None else video.encode_s,
            verify_s=None if video is None else video.verify_s,
            min_psnr_db=None if video is None else video.min_psnr_db,
        )
        with ctx.camera_lock(episode.video_key):
            recover_intents(ctx, camera=episode.video_key)
            if (episode.video_key, episode.episode) in ctx.done:
                return video is not None
            started = time.perf_counter()
            segment = append(ctx, ref, temp, episode.length, row, 0)
            fault_point("stage:after-append")
            commit(ctx, ref, segment, dataclasses.replace(row, append_s=time.perf_counter() - started))
            fault_point("stage:after-commit")
            ctx.state.clear_intent(episode.video_key, episode.episode)  # nothing to clean: SRC stays as it is
    return video is not None


@contextlib.contextmanager
def _episode_file(episode: ArchiveEpisode, video: Reencoded | None) -> Iterator[BinaryIO]:
    """The episode's video as a seekable binary file: SRC's own file (copied) or the re-encoded bytes."""
    if video is not None:
        yield io.BytesIO(video.video)
        return
    with open(episode.path, "rb") as f:
        yield f


def run_convert(src: Path, dest: Path, ray_address: str | None, workers: int | None) -> int:
    """``robovid convert``: print the report; exit 0, 1 (episodes not converted), 78 (bad settings or --ray)."""
    import sys

    from .config import load_settings
    from .errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_LOCKED, ConfigError, RemoteTaskError, RootLockedError

    dest.mkdir(parents=True, exist_ok=True)
    offload = None
    overrides: dict[str, Any] = {"root": dest}
    try:
        if ray_address is not None:
            from .ray_offload import RayOffload

            offload = RayOffload(ray_address or None)
            overrides["workers"] = min(64, offload.cpus)
        if workers is not None:
            overrides["workers"] = workers
        settings = load_settings(**overrides)
    except (ConfigError, RemoteTaskError) as error:
        print(f"robovid convert: {error}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        report = convert_archive(src, settings, offload.call if offload is not None else None)
    except RootLockedError as error:
        print(f"robovid convert: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except ArchiveError as error:
        print(f"robovid convert: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if offload is not None:
            offload.close()
    for failure in report.failed:
        print(f"NOT CONVERTED {failure}")
    print(
        f"{report.copied} episode(s) copied, {report.reencoded} re-encoded, {report.already_done} already in {dest}, "
        f"{len(report.failed)} not converted"
    )
    return EXIT_FAILURE if report.failed else 0
