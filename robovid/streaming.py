"""Encode camera frames while they are recorded (LeRobot's ``StreamingVideoEncoder``), never dropping one.

A recorder starts an episode for its cameras, feeds each frame (an ``H x W x 3`` or ``3 x H x W``
array) and finishes the episode. Each camera's frames go through a bounded queue to an encoder
thread, which writes them as closed MP4 segments of ``segment_frames`` frames (:mod:`robovid.stream_files`).

**Where robovid differs from LeRobot: a frame is never dropped.** When a camera's queue is full
(the encoder fell behind), ``feed_frame`` writes the frame as a PNG into the episode's normal
folder (``images/{camera}/episode-{N:06d}/frame-{i:06d}.png`` under ``temp_dir``) instead, and so
every later frame of that episode: the frames already queued are still encoded, so the episode is
a video prefix plus a PNG tail. ``finish_episode`` then

- without ``handoff`` (LeRobot's use): encodes the PNG tail itself, joins it to the prefix and
  returns the one video (the spilled PNGs are then deleted), blocking until done;
- with ``handoff=True``: writes ``finished.json`` and the episode folder's ``.complete`` marker
  and returns at once: robovid-watch verifies the segments against the fingerprints taken from the
  fed arrays, encodes the PNG tail, appends and commits the episode, then deletes the handoff.

With ``handoff=True`` every frame is also written to a crash log before it is queued (deleted once
its segment is published), so when the recording process dies, every frame whose ``feed_frame``
returned is in a published segment, in the log or a PNG, and robovid-watch turns the log into PNGs
and finishes the episode. A power cut spares the frames counted by ``durable_frames``: the log is
synced by a thread of its own as frames come (:mod:`robovid.stream_log`, README "Streaming").
"""

from __future__ import annotations

import contextlib
import operator
import os
import queue
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from robovid._stream_encoder import SEGMENT_FRAMES, _CameraEncoderThread, as_rgb_frame, join_videos, lerobot_shaped
from robovid.durable import fsync_dir, make_dirs_durably
from robovid.encode import FrameRate, _frame_rate, encode_frames
from robovid.encoder_config import VideoEncoderConfig, rgb_encoder_defaults
from robovid.errors import FrameSizeError, StreamingError, UnknownCameraError
from robovid.layout import episode_dir, frame_path, stream_dir
from robovid.lerobot_stats import image_stats_from_counts
from robovid.stream_files import (
    COMPLETE_MARKER,
    STREAM_JSON,
    Finished,
    SpillWriter,
    StreamInfo,
    lock_writer,
    settings_dict,
)
from robovid.stream_log import CrashLog

log = structlog.get_logger(__name__)


class _CameraStream:
    """One camera's open episode: its queue, encoder thread, crash log and spill state."""

    def __init__(
        self, owner: StreamingVideoEncoder, key: str, root: Path, episode: int, workdir: Path, lock_fd: int | None
    ) -> None:
        self.key, self.root, self.episode, self.workdir, self.lock_fd = key, root, episode, workdir, lock_fd
        self.handoff = owner.handoff
        self.png_dir = episode_dir(root, key, episode)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=owner.queue_maxsize)
        self.results: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self.video_path = workdir / f"{key.replace('/', '_')}_streaming.mp4"
        self.thread = _CameraEncoderThread(
            self.video_path,
            owner.fps,
            owner._rgb_encoder,
            self.queue,
            self.results,
            self.stop,
            owner._encoder_threads,
            workdir=workdir,
            segment_frames=owner.segment_frames,
            join=not owner.handoff,
        )
        self.fed = 0
        self.spilled_from: int | None = None
        self.shape: tuple[int, ...] | None = None
        self.log = CrashLog(workdir, owner.segment_frames, power_safe=owner.handoff and owner.power_safe)
        self.spill: SpillWriter | None = None

    def feed(self, image: Any) -> None:
        rgb = as_rgb_frame(image)
        if self.shape is None:
            self._write_info(rgb.shape)
            self.shape = rgb.shape  # only once stream.json is written: without it no frame can be salvaged or taken
        elif rgb.shape != self.shape:
            raise FrameSizeError(
                f"Camera {self.key!r} frame {self.fed} is {rgb.shape[1]}x{rgb.shape[0]}, the episode's first was "
                f"{self.shape[1]}x{self.shape[0]}: one episode has one frame size. Start a new episode for a new size."
            )
        index = self.fed
        if self.spilled_from is None and self.queue.full():
            self.spilled_from = index
            log.warning(
                "stream_spilling_to_png",
                camera=self.key,
                episode=self.episode,
                frame=index,
                folder=str(self.png_dir),
                detail="the encoder fell behind (its queue is full); this and every later frame of the episode are "
                "written as PNGs, and nothing is dropped",
            )
            self.spill = SpillWriter(
                self.workdir, self.png_dir, rgb.shape, self.thread.segment_frames, index, self.log.power_safe
            )
            self.spill.start()
        self.log.append(index, rgb)  # first the crash log: a copy into the page cache, synced by its own thread
        if self.spill is not None:
            self.spill.indices.put(index)
        else:
            self.queue.put_nowait(rgb)
        self.fed += 1

    def _write_info(self, shape: tuple[int, ...]) -> None:
        height, width = shape[:2]
        settings = settings_dict(self.thread.settings)
        info = StreamInfo(
            self.key, self.episode, _frame_rate(self.thread.fps), width, height, self.thread.segment_frames, settings
        )
        try:
            info.write(self.workdir)
        except OSError as error:
            raise StreamingError(
                f"Frame 0 of {self.key!r} could not be fed: {self.workdir / STREAM_JSON} could not be written "
                f"({error}). Free disk space, then feed it again."
            ) from error

    def check_alive(self) -> None:
        if self.thread.is_alive():
            return
        failure = "is not alive"
        with contextlib.suppress(queue.Empty):
            status, message = self.results.get_nowait()
            self.results.put(("error", message) if status == "error" else (status, message))
            if status == "error":
                failure = f"crashed: {message.rstrip('.')}"
        todo = (
            "They stay there while the episode is open: call finish_episode() (it raises this error again) to hand "
            "them to robovid-watch, or cancel_episode() to delete them."
            if self.handoff
            else "Call cancel_episode() to delete them, or finish_episode() to end the episode and keep them there."
        )
        raise StreamingError(
            f"Encoder thread for {self.key} {failure}. Frame {self.fed} was not fed. {self._where_fed_frames_are()} "
            + todo
        )

    def _where_fed_frames_are(self, ended: bool = False) -> str:
        """Where the frames fed are after the encoder thread failed, and who takes them (``ended``: by finish)."""
        kept = (
            f"The {self.fed} frames fed to episode {self.episode} of {self.key!r} are kept in {self.workdir} "
            "(its closed segments and crash log)"
        )
        if self.spilled_from is not None:
            kept += f" and, from frame {self.spilled_from}, as PNGs in {self.png_dir}"
        if self.handoff:
            when = "now" if ended else "once finish_episode() has ended the episode (or this process exits)"
            return (
                f"{kept}; robovid-watch takes them over {when}: it writes them as PNGs to {self.png_dir} and encodes "
                "them itself or, if it cannot either, keeps the PNGs and reports episode_failed saying what to do."
            )
        return f"{kept}; without handoff nothing turns them into video (robovid-watch does, with handoff=True)."

    def _close_spill(self) -> None:
        if self.spill is not None:
            self.spill.close()
            if self.spill.error is not None:
                raise StreamingError(
                    f"Spilled frames of {self.key} could not be written as PNGs to {self.png_dir}: {self.spill.error}. "
                    f"They are kept in the crash log in {self.workdir}."
                ) from self.spill.error

    def finish(self) -> tuple[Path, dict[str, Any] | None]:
        self._close_spill()
        while self.thread.is_alive():  # a dead thread takes nothing more from its queue
            try:
                self.queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self.thread.join()
        self.log.close()  # power_safe: every frame's log bytes are durable (segments and PNGs are already)
        status, data = self.results.get()
        if status == "error":
            where = self._where_fed_frames_are(ended=True)
            raise StreamingError(
                f"Encoder thread for {self.key} failed: {data.rstrip('.')}. The episode is ended. {where}"
                + ("" if self.handoff else f" Delete {self.workdir} once you no longer need them.")
            )
        prefix = self.fed if self.spilled_from is None else self.spilled_from
        counts = self.thread.counts + (self.spill.counts if self.spill is not None else 0)
        stats = lerobot_shaped(image_stats_from_counts(counts, self.fed)) if self.fed >= 2 else None
        if self.handoff:
            Finished(self.fed, prefix).write(self.workdir)
            self._drop_log()
            make_dirs_durably(self.png_dir)
            (self.png_dir / COMPLETE_MARKER).touch()
            self.release()
            return self.workdir, stats
        self._drop_log()
        (self.workdir / STREAM_JSON).unlink(missing_ok=True)
        if self.spilled_from is not None:
            self._encode_tail(prefix)
        return self.video_path, stats

    def _drop_log(self) -> None:
        """Every frame is in a segment or a PNG now: the crash log goes."""
        for raw in self.workdir.glob("raw-*.rgb"):
            raw.unlink()

    def _encode_tail(self, prefix: int) -> None:
        """LeRobot's use: encode the spilled PNGs (frames prefix..) and join them after the prefix video."""
        tail_frames = [frame_path(self.png_dir, i) for i in range(prefix, self.fed)]
        tail = self.workdir / "tail.mp4"
        encode_frames(tail_frames, tail, _frame_rate(self.thread.fps), self.thread.settings)
        join_videos([self.video_path, tail] if prefix else [tail], self.video_path)
        tail.unlink()
        for path in tail_frames:
            path.unlink()
        with contextlib.suppress(OSError):
            self.png_dir.rmdir()

    def cancel(self) -> None:
        self.halt(sync=False)  # its files are deleted next
        if self.spilled_from is not None:
            for i in range(self.spilled_from, self.fed):
                frame_path(self.png_dir, i).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.png_dir.rmdir()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.release()

    def halt(self, sync: bool = True) -> None:
        """Stop the threads, keeping every file (a no-op once finished); ``sync``: the crash log too."""
        with contextlib.suppress(StreamingError):
            self._close_spill()
        self.stop.set()
        self.thread.join(timeout=30)
        with contextlib.suppress(StreamingError):
            self.log.close(sync)

    def discard(self) -> None:
        """Delete the folder of a stream whose threads never started (nothing was fed), then unlock."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def _checked_episode(video_keys: list[str], episode_index: Any) -> int:
    """The episode index as an int; StreamingError for an index or camera keys robovid-watch could never take."""
    if isinstance(episode_index, bool) or not hasattr(episode_index, "__index__") or operator.index(episode_index) < 0:
        raise StreamingError(
            f"episode_index must be an integer, 0 or more (got {episode_index!r}): robovid-watch takes the episode "
            "folders named episode-NNNNNN only."
        )
    for key in video_keys:
        if not key or key.startswith(".") or "/" in key or "\0" in key or video_keys.count(key) > 1:
            raise StreamingError(
                f"Camera key {key!r} (of {video_keys}) cannot name one folder of its own: give each camera once, by "
                "a name with no '/' that does not start with '.' (as LeRobot's observation.images.front)."
            )
    return operator.index(episode_index)


class StreamingVideoEncoder:
    """Per-camera encoder threads for encoding while recording; LeRobot's API, and no frame is ever dropped.

    ``fps``, ``rgb_encoder`` (default :func:`robovid.rgb_encoder_defaults`), ``queue_maxsize`` (frames
    per camera waiting for its encoder) and ``encoder_threads`` as LeRobot's. ``depth_encoder`` is
    accepted for LeRobot's signature; depth cameras are not streamed yet (StreamingError).
    ``handoff=True`` leaves each finished episode to robovid-watch (module docstring);
    ``segment_frames`` is the length of the closed MP4 segments the encoder writes. ``power_safe``
    (with ``handoff``) syncs the crash log as frames come, so :attr:`durable_frames` follows
    the frames fed within a sync or two; without it only a process crash is survived
    (:mod:`robovid.stream_log` has the contract).
    """

    def __init__(
        self,
        fps: FrameRate,
        rgb_encoder: VideoEncoderConfig | None = None,
        depth_encoder: VideoEncoderConfig | None = None,
        queue_maxsize: int = 30,
        encoder_threads: int | None = None,
        *,
        handoff: bool = False,
        segment_frames: int = SEGMENT_FRAMES,
        power_safe: bool = True,
    ) -> None:
        if queue_maxsize < 1:
            raise ValueError(f"queue_maxsize must be 1 or more (got {queue_maxsize}): the queue is bounded.")
        if segment_frames < 1:
            raise ValueError(f"segment_frames must be 1 or more (got {segment_frames}).")
        _frame_rate(fps)  # checked here, not at the first frame of a recording
        self.fps = fps
        self._rgb_encoder = rgb_encoder or rgb_encoder_defaults()
        self._depth_encoder = depth_encoder
        self._encoder_threads = encoder_threads
        self.queue_maxsize = queue_maxsize
        self.handoff = handoff
        self.segment_frames = segment_frames
        self.power_safe = power_safe
        self._streams: dict[str, _CameraStream] = {}
        self._threads: dict[str, _CameraEncoderThread] = {}
        self._dropped_frames: dict[str, int] = {}
        """Always 0 per camera: kept for LeRobot's name; robovid spills instead (:attr:`spilled_frames`)."""
        self.spilled_frames: dict[str, int] = {}
        self._next_episode = 0
        self._episode_active = False
        self._closed = False

    def start_episode(
        self,
        video_keys: list[str],
        temp_dir: Path | str,
        depth_video_keys: list[str] | None = None,
        *,
        episode_index: int | None = None,
    ) -> None:
        """Start an encoder per camera. ``temp_dir`` is the recording root (spilled PNGs go to its ``images/``).

        ``episode_index`` names the episode's folders (default: one more than the last episode this
        encoder streamed, from 0). StreamingError if another process streams the same episode, or
        (``handoff``) it was already streamed or recorded as PNGs and not yet taken by robovid-watch.
        An episode still open is cancelled, as LeRobot's encoder does, except a ``handoff`` episode with
        frames fed: StreamingError, nothing deleted (finish or cancel it first).
        """
        if depth_video_keys:
            raise StreamingError(
                f"Depth cameras ({', '.join(depth_video_keys)}) cannot be streamed by robovid yet; record them as "
                "16-bit PNGs instead."
            )
        episode = _checked_episode(video_keys, self._next_episode if episode_index is None else episode_index)
        if self._episode_active:
            self._refuse_to_discard_fed_frames(episode)
            self.cancel_episode()  # LeRobot's semantics where nothing durable is lost (no handoff, or nothing fed)
        root = Path(temp_dir)
        self._dropped_frames.clear()
        self.spilled_frames.clear()
        try:
            for key in video_keys:
                self._streams[key] = self._open(key, root, episode)
                self._threads[key] = self._streams[key].thread
                self._dropped_frames[key] = 0
        except BaseException:
            for stream in self._streams.values():
                stream.discard()  # nothing was fed: no camera's episode stays reserved by this failed start
            self._streams.clear()
            self._threads.clear()
            raise
        for stream in self._streams.values():
            stream.thread.start()
        self._episode_index = episode
        self._episode_active = True

    def _refuse_to_discard_fed_frames(self, next_episode: int) -> None:
        """StreamingError when the open episode is a handoff holding frames fed: cancelling would delete them."""
        fed = {key: stream.fed for key, stream in self._streams.items()}
        if not self.handoff or not any(fed.values()):
            return
        cameras = ", ".join(f"{key!r} ({count} frames fed)" for key, count in fed.items())
        raise StreamingError(
            f"start_episode(episode_index={next_episode}) refused: episode {self._episode_index} is still open, "
            f"cameras {cameras}, and its frames are durable in its handoff folders; starting another would delete "
            "them. Call finish_episode() to keep it (robovid-watch commits it) or cancel_episode() to discard it, "
            "then start the next episode."
        )

    def _open(self, key: str, root: Path, episode: int) -> _CameraStream:
        png_dir = episode_dir(root, key, episode)
        if any(png_dir.glob("frame-*.png")):
            raise StreamingError(f"{png_dir} already holds frames: episode {episode} of {key!r} was recorded before.")
        if not self.handoff:
            root.mkdir(parents=True, exist_ok=True)
            return _CameraStream(self, key, root, episode, Path(tempfile.mkdtemp(dir=root)), None)
        workdir = stream_dir(root, key, episode)
        taken = StreamingError(
            f"{workdir}: episode {episode} of {key!r} is being streamed, or was streamed and robovid-watch has not "
            "taken it yet; record under a new episode index."
        )
        if workdir.exists():
            raise taken
        make_dirs_durably(workdir.parent)
        # made complete with its lock held, then renamed into place: robovid-watch never sees it unlocked and empty
        staging = Path(tempfile.mkdtemp(dir=workdir.parent, prefix=f".{workdir.name}."))
        fd = lock_writer(staging)
        assert fd is not None
        try:
            os.rename(staging, workdir)
        except OSError:
            os.close(fd)
            shutil.rmtree(staging, ignore_errors=True)
            raise taken from None
        fsync_dir(workdir.parent)
        return _CameraStream(self, key, root, episode, workdir, fd)

    def feed_frame(self, video_key: str, image: np.ndarray) -> None:
        """Hand one frame (``H x W x 3`` or ``3 x H x W``, uint8, or floats in [0, 1]) to the camera's encoder.

        A copy is taken (camera drivers reuse buffers). Never blocks on the encoder and never drops:
        when its queue is full the frame (and the rest of the episode) is written as a PNG.
        """
        if not self._episode_active:
            raise StreamingError("No active episode. Call start_episode() first.")
        stream = self._streams.get(video_key)
        if stream is None:
            raise UnknownCameraError(
                f"No camera {video_key!r} in episode {self._episode_index}: its open cameras are "
                f"{', '.join(map(repr, self._streams))}. Feed one of those, or list {video_key!r} in start_episode's "
                "video_keys."
            )
        stream.check_alive()
        stream.feed(image)
        if stream.spilled_from is not None:
            self.spilled_frames[video_key] = stream.fed - stream.spilled_from

    @property
    def durable_frames(self) -> dict[str, int]:
        """Per camera of the open episode, how many of the frames fed a power cut can no longer lose (0, 1, ...).

        Only with ``handoff`` and ``power_safe``; ``finish_episode`` returns once all of them are.
        """
        return {key: stream.log.durable_frames for key, stream in self._streams.items()}

    def finish_episode(self) -> dict[str, tuple[Path, dict[str, Any] | None]]:
        """Wait for the encoders; per camera ``(video path, LeRobot statistics or None)``.

        With ``handoff`` the path is the episode's handoff folder: robovid-watch appends it.
        """
        if not self._episode_active:
            raise StreamingError("No active episode to finish.")
        results: dict[str, tuple[Path, dict[str, Any] | None]] = {}
        try:
            for key, stream in self._streams.items():
                results[key] = stream.finish()
                if stream.spilled_from is not None:
                    log.info(
                        "stream_spilled",
                        camera=key,
                        episode=stream.episode,
                        spilled=stream.fed - stream.spilled_from,
                        frames=stream.fed,
                    )
        finally:
            for stream in self._streams.values():
                stream.halt()  # after a failure: nothing writes into a handoff robovid-watch may salvage now
                stream.release()
            self._streams.clear()
            self._threads.clear()
            self._episode_active = False
        self._next_episode = self._episode_index + 1
        return results

    def cancel_episode(self) -> None:
        """Abandon the current episode: encoders stopped, its segments, crash log and spilled PNGs deleted."""
        if not self._episode_active:
            return
        for stream in self._streams.values():
            stream.cancel()
        self._streams.clear()
        self._threads.clear()
        self._episode_active = False

    def close(self) -> None:
        """End the encoder; safe to call again.

        An episode still open is cancelled, as LeRobot's encoder does, except a ``handoff`` episode
        with frames fed: those are durable, so they stay in its handoff folders, unlocked, and
        robovid-watch salvages and commits them as it does a recorder's that died mid-episode
        (call :meth:`cancel_episode` first to discard them).
        """
        if self._closed:
            return
        fed = {key: stream.fed for key, stream in self._streams.items()}
        if self._episode_active and self.handoff and any(fed.values()):
            for stream in self._streams.values():
                stream.halt()
                stream.release()
            log.warning(
                "stream_left_for_salvage",
                episode=self._episode_index,
                frames=fed,
                detail="close() with the episode still open: its frames fed stay in its handoff folders, and "
                "robovid-watch salvages and commits them; call cancel_episode() before close() to discard them",
            )
            self._streams.clear()
            self._threads.clear()
            self._episode_active = False
        else:
            self.cancel_episode()
        self._closed = True
