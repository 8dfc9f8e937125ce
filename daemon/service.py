"""The service loop: recover, then hints -> schedule -> collect until stopped.

Each pass of the loop takes the file events (hints) and finished episodes, schedules every
complete episode onto a free worker, and classifies each outcome (done, failed, deferred for
space, changed, abandoned). Discovery and completion are :mod:`robovid_watch.discover`, the work
on one episode :mod:`robovid_watch.stages`, disk and backlog checks :mod:`robovid_watch.health`.

Threads: the main thread owns all scheduling state; ``workers`` threads run
:func:`robovid_watch.stages.process_episode`; watchdog's observer thread only puts
paths on a queue. A signal handler only sets ``stop``; workers check it between
stages (and the encoder between frames), so nothing is interrupted mid-append.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from watchdog.observers.api import BaseObserver

from robovid._faults import fault_point, fault_scope
from robovid.errors import EpisodeError, MetadataError, UnsafePathError, VerificationError, VideoFormatError
from robovid.layout import check_inside, images_dir
from robovid.metadata import SegmentStore, find_segment, read_segments

from . import retakes, streamed
from .chunks import last_locations_in_rows, seal_at_start, seal_idle
from .cleaning import leftovers
from .config import Settings
from .crashguard import CrashGuard
from .discover import (
    EpisodeRef,
    FpsSource,
    SettleClock,
    folder_signature,
    has_marker,
    ref_from_path,
    scan,
    start_observer,
)
from .errors import (
    CommitFailedError,
    EpisodeChangedError,
    ObserverDiedError,
    RemoteTaskError,
    RootReplacedError,
)
from .health import BacklogWatch, DiskGuard, is_disk_full
from .lerobot import LeRobotMode, Verdict
from .migrate import migrate_state
from .notify import sd_notify
from .recovery import recover_intents
from .reports import forget_commit_failures, report_deferred, report_failure
from .stages import Context, Offload, Outcome, process_episode
from .state import RetakeRequest, RootState
from .stop_signals import StopRequest, block_stop_signals, stop_signals_blocked
from .watch_metrics import WatchMetricsFile

log = structlog.get_logger("robovid_watch")

TICK_S = 1.0
COALESCE_S = 0.2


def _observer_alive(observer: BaseObserver) -> bool:
    """The observer thread and every watch's reader (watchdog stops a reader whose folder was deleted)."""
    return observer.is_alive() and all(emitter.is_alive() for emitter in observer.emitters)


@dataclass
class Counters:
    """What this run did (for the final log event and for `robovid process`)."""

    done: int = 0
    cleaned: int = 0
    failed: int = 0
    deferred: int = 0


class Service:
    """One robovid-watch run on one root."""

    def __init__(
        self,
        settings: Settings,
        once: bool = False,
        watch: bool = True,
        on_progress: Callable[[EpisodeRef, str], None] | None = None,
        offload: Offload | None = None,
    ) -> None:
        self.settings = settings
        self.offload = offload
        self.root = settings.root
        self.once = once
        self.watch = watch and not once
        self.on_progress = on_progress
        self.stop = StopRequest()
        """Set by the stop signals' handler (robovid_watch.main): it takes no lock, see :mod:`.stop_signals`."""
        self.state = RootState(self.root)
        self.guard = CrashGuard(self.state, settings.vcodec)
        self.counters = Counters()
        self._hints: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._candidates: dict[tuple[str, int], EpisodeRef] = {}
        self._in_flight: dict[tuple[str, int], Future[Outcome]] = {}
        self._completed: queue.SimpleQueue[tuple[EpisodeRef, Future[Outcome]]] = queue.SimpleQueue()
        self.disk = DiskGuard(self.root, settings.min_free_mb)
        self.backlog = BacklogWatch(settings.backlog_warn_s)
        self.fps = FpsSource(self.root, settings.fps, settings.vcodec)
        self.metrics = WatchMetricsFile(settings.metrics_path, self.root, settings.min_free_mb)
        self.settle = SettleClock(settings.settle_s)
        self._started = time.monotonic()
        self._parked: set[tuple[str, int]] = set()
        """Failed or duplicate episodes not looked at again until a hint or a rescan touches them."""
        self.lerobot = LeRobotMode.from_settings(settings)
        self._verdicts: dict[tuple[str, int], Verdict] = {}
        self._done: set[tuple[str, int]] = set()
        self._takes: dict[tuple[str, int], int] = {}
        self._unreadable_metadata: MetadataError | None = None
        """A worker found the segment table unreadable: the run stops and raises it (exit 65), as at start."""

    # lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped (or, with ``once``, until nothing is left to do). Returns an exit code."""
        self.state.acquire_lock()
        try:
            migrate_state(self.root)
            return self._run_locked()
        finally:
            self.guard.close()
            self.state.release_lock()

    def _run_locked(self) -> int:
        ctx = self._context()
        self._done, self._takes = ctx.done, ctx.takes
        self.lerobot.load_committed(SegmentStore(self.root).rows())
        removed = self.state.clear_temp_files()
        forget_commit_failures(self.state)
        crashed = self.guard.start()
        try:
            recover_intents(ctx)
        except OSError as error:
            if not is_disk_full(error):
                raise
            log.error("disk_full", detail=str(error), action="recovery resumes once space is freed on the root")
        seal_at_start(self.root)
        self.metrics.start()
        for ref, crash in crashed:  # native crashes of the previous runs: these episodes are parked
            self._fail(ref, crash)
        images_dir(self.root).mkdir(parents=True, exist_ok=True)
        with stop_signals_blocked():  # its threads inherit the mask: SIGTERM goes to the main thread
            observer = start_observer(self.root, self._hints) if self.watch else None
        log.info(
            "started",
            root=str(self.root),
            workers=self.settings.workers,
            stale_temp_removed=removed,
            crash_file=str(self.guard.crash_file),
            crash_logs=self.guard.crash_logs(),
        )
        self._rescan()
        sd_notify("READY=1")
        next_rescan = time.monotonic() + self.settings.rescan_s
        with ThreadPoolExecutor(
            self.settings.workers, thread_name_prefix="robovid-worker", initializer=block_stop_signals
        ) as pool:
            try:
                while not self.stop.is_set():
                    self._drain_hints()
                    self._collect_finished()
                    self.lerobot.after_commits()
                    self._schedule(ctx, pool)
                    sd_notify("WATCHDOG=1")
                    self.backlog.sample(sum(1 for ref in self._candidates.values() if ref.path.exists()))
                    self.metrics.write(self.backlog, self.disk, self.state)
                    self.state.check_root()
                    if observer is not None and not _observer_alive(observer):
                        raise ObserverDiedError(
                            "The file watcher (watchdog observer) died; exiting so systemd restarts robovid-watch."
                        )
                    if self.once and not self._in_flight and self._nothing_left() and self._first_settle_over():
                        self.lerobot.after_commits()
                        break
                    if time.monotonic() >= next_rescan:
                        self._rescan()
                        seal_idle(ctx, {camera for camera, _ in self._in_flight}, self.settings.seal_idle_s)
                        next_rescan = time.monotonic() + self.settings.rescan_s
                    self._wait(TICK_S)
            finally:
                sd_notify("STOPPING=1")
                self.stop.set()
                if observer is not None:
                    observer.stop()
                pool.shutdown(wait=True, cancel_futures=True)
                self._collect_finished()
                self.metrics.write(self.backlog, self.disk, self.state, force=True)
        self.state.check_root()  # a stop caused by a replaced root is not a clean stop
        if self._unreadable_metadata is not None:
            raise self._unreadable_metadata
        log.info(
            "stopped",
            episodes_done=self.counters.done,
            failed=self.counters.failed,
            crash_file=str(self.guard.crash_file),
            crash_logs=self.guard.crash_logs(),
        )
        return 0

    def request_stop(self) -> None:
        """Ask the service to stop; safe from a signal handler: neither call takes a lock.

        ``SimpleQueue.put`` is C code that may interrupt another ``put`` or ``get`` of the same queue
        in the same thread (Python's documentation calls it reentrant); the hint wakes the main loop.
        """
        self.stop.set()
        self._hints.put("")

    def _context(self) -> Context:
        return Context(
            root=self.root,
            state=self.state,
            store=SegmentStore(self.root),
            encoder=self.settings.encoder_settings(),
            max_frame_pixels=self.settings.max_frame_pixels,
            file_size_limit_bytes=int(self.settings.video_file_size_mb * 1024 * 1024),
            files_per_chunk=self.settings.chunk_size,
            min_psnr_db=self.settings.min_psnr_db,
            marker=self.settings.complete_marker,
            settle_s=self.settings.settle_s,
            stop=self.stop,
            done=SegmentStore(self.root).keys(),
            takes=SegmentStore(self.root).takes(),
            offload=self.offload,
            last_in_rows=last_locations_in_rows(read_segments(self.root, all_takes=True)),
        )

    # discovery -------------------------------------------------------------------------
    def _wait(self, timeout: float) -> None:
        """Block until a hint (or ``timeout``); gather a burst of file events into one pass.

        A recorder creates dozens of files a second; each pass looks at every waiting episode,
        so path hints are coalesced for COALESCE_S. A finished worker ("" hint) wakes at once.
        """
        deadline: float | None = None
        while True:
            left = timeout if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return
            try:
                path = self._hints.get(timeout=left)
            except queue.Empty:
                return
            self._hint(path)
            if not path:
                return
            deadline = deadline or time.monotonic() + COALESCE_S

    def _drain_hints(self) -> None:
        while True:
            try:
                self._hint(self._hints.get_nowait())
            except queue.Empty:
                return

    def _hint(self, path: str) -> None:
        ref = ref_from_path(self.root, path) if path else None
        if ref is not None:
            self._candidates.setdefault((ref.camera, ref.episode), ref)
            self._parked.discard((ref.camera, ref.episode))

    def _rescan(self) -> None:
        self._parked.clear()
        streamed.prepare(self.root, self.settings.complete_marker, self._done)
        for ref in scan(self.root):
            self._candidates.setdefault((ref.camera, ref.episode), ref)
        fault_point("service:rescan")

    def _first_settle_over(self) -> bool:
        """In settle mode, ``once`` (robovid process) watches the folders for one settle time before it gives up."""
        return self.settings.settle_s <= 0 or time.monotonic() - self._started >= self.settings.settle_s + TICK_S

    def _nothing_left(self) -> bool:
        """``once``: no ready episode, or none can start (meta/info.json unusable: info_json_invalid says why)."""
        return self.fps.current() is None or not self._ready_exists()

    def _ready_exists(self) -> bool:
        self._judge_lerobot()
        return any(self._is_ready(ref) for ref in self._candidates.values())

    def _judge_lerobot(self) -> None:
        """Readiness of a LeRobot root's folders, for this pass (see robovid_watch.lerobot)."""
        skip = self._in_flight.keys() | self._parked
        wanted = {k: r for k, r in self._candidates.items() if k not in skip}
        self._verdicts = self.lerobot.judge(
            {k: r for k, r in wanted.items() if k not in self._done or self._retake_asked(r)}
        )

    def _is_ready(self, ref: EpisodeRef) -> bool:
        key = (ref.camera, ref.episode)
        if key in self._in_flight or key in self._parked or not ref.path.exists():
            return False
        if self.lerobot.is_lerobot and (key not in self._done or self._retake_asked(ref)):
            verdict = self._verdicts.get(key)
            if verdict is None or not verdict.ready:
                if verdict is not None and verdict.error is not None and not self._failed_as_is(ref):
                    self._fail(ref, verdict.error)
                return False
        elif not has_marker(ref, self.settings.complete_marker) and not (
            self.settings.settle_s > 0 and self.settle.settled(ref)
        ):
            return False
        return not self._failed_as_is(ref)

    def _retake_asked(self, ref: EpisodeRef) -> bool:
        """A re-take of this committed episode was asked for, and still holds (its take is the committed one)."""
        key = (ref.camera, ref.episode)
        return retakes.is_due(self._takes, key, self.state.retake_request(*key))

    def _failed_as_is(self, ref: EpisodeRef) -> bool:
        """The episode failed before and its folder has not changed since (nor a re-take asked for): parked."""
        failure = self.state.failure(ref.camera, ref.episode)
        if failure is not None and self._retake_asked(ref):
            return False
        if failure is not None and failure.signature == folder_signature(ref.path):
            self._parked.add((ref.camera, ref.episode))
            return True
        return False

    # scheduling ------------------------------------------------------------------------
    def _schedule(self, ctx: Context, pool: ThreadPoolExecutor) -> None:
        fps = self.fps.current()
        if fps is None or not self.disk.space_ok():
            return
        self._judge_lerobot()
        for key, ref in sorted(self._candidates.items(), key=lambda item: (item[1].episode, item[1].camera)):
            if len(self._in_flight) >= self.settings.workers or self.stop.is_set() or self._suspect_in_flight():
                return
            if not ref.path.exists():
                del self._candidates[key]
                self.settle.forget(ref.path)
                continue
            if not self._is_ready(ref):
                continue
            if self._in_flight and self.guard.is_suspect(key):
                return  # it runs alone once the others are done: a crash then is surely its own
            retake = None
            if key in ctx.done and self.state.intent(*key) is None:
                retake = self.state.retake_request(*key)
                if not retakes.is_due(ctx.takes, key, retake):
                    self._report_committed_folder(ref, ctx.takes.get(key, 0), retake)
                    continue
            try:
                check_inside(ref.path, self.root, "Episode folder")
            except UnsafePathError as error:
                self._fail(ref, error)
                continue
            future = pool.submit(self._run_one, ctx, ref, fps, retake)
            self._in_flight[key] = future
            future.add_done_callback(self._completion_callback(ref))

    def _suspect_in_flight(self) -> bool:
        return any(self.guard.is_suspect(key) for key in self._in_flight)

    def _completion_callback(self, ref: EpisodeRef) -> Callable[[Future[Outcome]], None]:
        def done(future: Future[Outcome]) -> None:
            self._completed.put((ref, future))
            self._hints.put("")  # wake the main loop: a worker is free

        return done

    def _run_one(self, ctx: Context, ref: EpisodeRef, fps: int, retake: RetakeRequest | None) -> Outcome:
        bound = log.bind(camera=ref.camera, episode=ref.episode)
        bound.info(
            "episode_started", path=str(ref.path), fps=fps, alone=self.guard.is_suspect((ref.camera, ref.episode))
        )
        if retake is not None:
            retakes.log_started(ref.camera, ref.episode, retake)
        with self.guard.in_flight(ref), fault_scope(ref.episode):
            if streamed.has_handoff(self.root, ref):
                return streamed.process_streamed(ctx, ref)
            return process_episode(ctx, ref, fps, retake)

    def _collect_finished(self) -> None:
        while True:
            try:
                ref, future = self._completed.get_nowait()
            except queue.Empty:
                return
            key = (ref.camera, ref.episode)
            self._in_flight.pop(key, None)
            self._finish(ref, future)

    def _finish(self, ref: EpisodeRef, future: Future[Outcome]) -> None:
        key = (ref.camera, ref.episode)
        error = future.exception() if not future.cancelled() else None
        if future.cancelled():
            return
        if error is None:
            outcome = future.result()
            if outcome.status == "done":
                self.lerobot.committed(ref.episode, outcome.frames)
            self._candidates.pop(key, None)
            self.state.clear_failure(*key)
            self.state.clear_deferral(*key)
            self.guard.forget(key)
            self._log_outcome(ref, outcome)
            return
        if isinstance(error, RootReplacedError):
            self.stop.set()  # the main loop's own check raises it; nothing is recorded in the new folder
            log.info("episode_abandoned", camera=ref.camera, episode=ref.episode, reason=str(error))
        elif isinstance(error, MetadataError):  # the table, not the episode: every commit would fail the same way
            self._unreadable_metadata = self._unreadable_metadata or error
            self.stop.set()  # run() raises it: exit 65, as when the table is unreadable at start
            log.info(
                "episode_abandoned",
                camera=ref.camera,
                episode=ref.episode,
                reason="the segment metadata is unreadable: the service stops (exit 65); PNGs and journal kept",
            )
        elif isinstance(error, InterruptedError):
            log.info("episode_abandoned", camera=ref.camera, episode=ref.episode, reason="stop requested; PNGs kept")
        elif isinstance(error, RemoteTaskError):  # the cluster's fault, not the episode's: no failure record
            self.counters.failed += 1
            self.metrics.stats.episode_failed()
            self._parked.add(key)  # not again until a rescan or the next run
            report_deferred(self.state, ref, error)
        elif isinstance(error, EpisodeChangedError):
            log.info("episode_changed", camera=ref.camera, episode=ref.episode, detail=str(error))
        elif is_disk_full(error):
            self.counters.deferred += 1
            self.disk.pause(max(5.0, self.settings.rescan_s))
            log.error(
                "disk_full",
                camera=ref.camera,
                episode=ref.episode,
                path=str(ref.path),
                detail=str(error),
                action=f"free space on {self.root}; robovid retries by itself (every {max(5.0, self.settings.rescan_s):.0f} s)",
            )
        elif isinstance(error, (EpisodeError, VerificationError, VideoFormatError, CommitFailedError)):
            self._fail(ref, error)
        else:
            self._fail(ref, error, unexpected=True)
        if self.on_progress is not None:
            self.on_progress(ref, "failed")

    def _log_outcome(self, ref: EpisodeRef, outcome: Outcome) -> None:
        if outcome.status == "done":
            self.counters.done += 1
            self.metrics.stats.episode_done(ref.camera, outcome)
            log.info(
                "episode_done",
                camera=ref.camera,
                episode=ref.episode,
                frames=outcome.frames,
                video_bytes=outcome.video_bytes,
                source_bytes=outcome.source_bytes,
                compression_ratio=round(outcome.source_bytes / max(1, outcome.video_bytes), 1),
                **{k: round(v, 3) for k, v in outcome.timings.items()},
            )
        else:
            self.counters.cleaned += 1
            log.info("episode_cleaned", camera=ref.camera, episode=ref.episode)
        if self.on_progress is not None:
            self.on_progress(ref, outcome.status)

    def _fail(self, ref: EpisodeRef, error: BaseException, unexpected: bool = False) -> None:
        """Record and report the episode's failure; ``unexpected``: a bug, logged with its traceback."""
        self.counters.failed += 1
        self.metrics.stats.episode_failed()
        self._parked.add((ref.camera, ref.episode))
        report_failure(self.state, ref, error, unexpected)

    def _report_committed_folder(self, ref: EpisodeRef, take: int, stale: RetakeRequest | None) -> None:
        """A committed episode's folder holds files again: report kept frames once; sidecar files alone, never.

        Frames with the committed episode's numbers are a re-take (the error names ``robovid retake``);
        frames past them were written after the commit (``episode_continued``).
        """
        row = find_segment(self.root, ref.camera, ref.episode)
        num_frames = row.num_frames if row is not None else 0
        try:
            kept = leftovers(ref.path, self.settings.complete_marker, num_frames)
            if kept.retaken:
                raise retakes.duplicate_error(self.root, ref, take, stale)
            kept.check(ref.path, ref.camera, ref.episode, num_frames, self.settings.settle_s)
        except EpisodeError as error:
            self._fail(ref, error)
            return
        self._parked.add((ref.camera, ref.episode))
