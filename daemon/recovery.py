"""Recovery: finish or undo, at start and before each append, what a crash left in the journal.

Each journal intent is resolved from the files themselves: the chunk unchanged -> the episode is
redone from its PNGs; the chunk holds the append but no row -> the row is committed from the
chunk's own timestamps (or, if it can never be committed, the append is taken back:
:mod:`robovid_watch.rows`); the row present -> cleaning is finished. An intent robovid cannot read
is quarantined and its camera rolled back to what its rows claim (:mod:`robovid_watch.salvage`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from robovid.append import count_frames, read_segment, recover_chunk
from robovid.errors import EpisodeError, VideoFormatError
from robovid.layout import chunk_path, episode_dir

from . import retakes
from .chunks import log_chunk_skipped
from .cleaning import clean
from .discover import EpisodeRef
from .rows import commit, commit_can_wait, undo_uncommitted
from .salvage import camera_named, roll_back_unclaimed_tail
from .state import DamagedIntent, Intent

if TYPE_CHECKING:
    from .stages import Context

log = structlog.get_logger("robovid_watch")


def recover_intents(ctx: Context, camera: str | None = None) -> None:
    """Finish or undo every journaled append left by a crash (see the module docstring)."""
    for intent in ctx.state.intents():
        if isinstance(intent, DamagedIntent):
            name = camera_named(ctx.root, intent)
            if name is not None and (camera is None or camera == name):
                roll_back_unclaimed_tail(ctx.root, name, intent.episode)
            continue
        if camera is not None and intent.camera != camera:
            continue
        key = (intent.camera, intent.episode)
        if key in ctx.done and ctx.takes.get(key, 0) >= intent.row.take:
            if camera is None:
                _finish_cleaning(ctx, intent)
            continue  # a running service: the worker that committed it is cleaning it
        path = chunk_path(ctx.root, intent.camera, intent.chunk_index, intent.file_index)
        try:
            if path.exists() and recover_chunk(path):
                log.info("dropped_uncommitted_append", chunk=str(path), camera=intent.camera, episode=intent.episode)
            frames_now = count_frames(path) if path.exists() else 0
        except VideoFormatError as error:
            log_chunk_skipped(path, error)
            ctx.state.clear_intent(intent.camera, intent.episode)
            continue
        if frames_now == intent.frames_before + intent.num_frames:
            segment = read_segment(path, intent.frames_before, intent.num_frames)
            try:
                commit(ctx, _ref_of(ctx, intent), segment, intent.row)
            except Exception as error:
                if commit_can_wait(error):
                    raise
                undo_uncommitted(ctx, intent.camera, intent.episode, segment, error)  # never a crash loop
                continue
            ctx.state.clear_failure(intent.camera, intent.episode)
            log.info("recovered_commit", camera=intent.camera, episode=intent.episode, chunk=str(path))
        else:
            if frames_now != intent.frames_before:
                log.error(
                    "journal_inconsistent",
                    camera=intent.camera,
                    episode=intent.episode,
                    chunk=str(path),
                    frames_now=frames_now,
                    frames_expected=[intent.frames_before, intent.frames_before + intent.num_frames],
                    action="episode will be encoded again from its PNGs",
                )
            ctx.state.clear_intent(intent.camera, intent.episode)


def _finish_cleaning(ctx: Context, intent: Intent) -> None:
    """At start: finish the clean a crash interrupted (its folder may have lost its marker, so no scan would)."""
    ref = _ref_of(ctx, intent)
    try:
        clean(ctx, ref, intent)
    except (EpisodeError, OSError) as error:
        log.error(
            "clean_unfinished",
            camera=intent.camera,
            episode=intent.episode,
            path=str(ref.path),
            detail=str(error),
            action="the episode is committed; the files named were kept: check them and remove the folder",
        )
    else:
        log.info("recovered_clean", camera=intent.camera, episode=intent.episode)
        key = (intent.camera, intent.episode)
        retakes.answer(ctx.state, ctx.takes, key, ctx.state.retake_request(*key))


def _ref_of(ctx: Context, intent: Intent) -> EpisodeRef:
    return EpisodeRef(intent.episode, intent.camera, episode_dir(ctx.root, intent.camera, intent.episode))
