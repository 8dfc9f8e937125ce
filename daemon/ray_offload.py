"""``robovid process ROOT --ray [ADDRESS]``: stages 3-4 as Ray tasks; appends and commits stay in this process.

The service runs as it always does (discovery, journal recovery, one lock per camera file,
failures, cleaning), here, on the driver. Only PNG decode + encode + verify of an episode
(:func:`robovid_watch.stages.encode_and_verify`, the very function the service runs) becomes one
Ray task of one CPU; the verified episode's bytes come back to the driver's worker thread, which
journals the intent, appends in place, commits and cleans exactly as without Ray. So the crash
guarantees are the service's own:

- a worker killed mid-task: Ray runs the task again (:data:`TASK_RETRIES` times); the driver had
  written nothing for the episode yet, and its PNGs are still there;
- the driver killed: its tasks die with its job, and the next run recovers the journal
  (intent -> in-place append -> commit -> clean), as after a killed service.

Workers read the episode's PNGs by path: on a cluster of several machines the root must be
mounted at the same path on every node (a NAS). On one machine it always is.
"""

from __future__ import annotations

import dataclasses
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from robovid._faults import fault_point
from robovid._stop import StopFlag
from robovid.encode import EncodeResult
from robovid.settings import EncoderSettings
from robovid.verify import VerifyReport

from .errors import RemoteTaskError
from .stages import EncodeSettings, Offload, encode_and_verify

TASK_RETRIES = 3
"""Times Ray runs an episode's task again after its worker died (killed, out of memory, node lost)."""
WAIT_TICK_S = 0.5
"""How often a driver thread waiting for its task looks at the stop event."""
TASK_NAME = "robovid_encode_and_verify"
"""The task's name: Ray titles its worker process ``ray::robovid_encode_and_verify`` while it runs."""


@dataclass
class _WorkerSettings:
    """The :class:`~robovid_watch.stages.EncodeSettings` a task runs with (picklable; no offload: it runs here)."""

    encoder: EncoderSettings
    min_psnr_db: float
    stop: StopFlag = dataclasses.field(default_factory=threading.Event)
    offload: Offload | None = None


@dataclass(frozen=True)
class EncodedEpisode:
    """What a task sends back: the verified episode's bytes, its reports and statistics, and where it ran."""

    video: bytes
    result: EncodeResult
    """Without the kept source frames and fingerprints (used on the worker, not sent back)."""
    report: VerifyReport
    stats_json: str | None
    timings: dict[str, float]
    worker_pid: int


def run_task(frames: list[str], fps: int, encoder: EncoderSettings, min_psnr_db: float) -> EncodedEpisode:
    """One episode's stages 3-4 on a Ray worker, into memory."""
    fault_point("ray:task")
    buffer = io.BytesIO()
    timings: dict[str, float] = {}
    settings = _WorkerSettings(encoder, min_psnr_db)
    result, report, stats_json = encode_and_verify(settings, [Path(p) for p in frames], buffer, fps, timings)
    light = dataclasses.replace(result, kept_frames={}, fingerprints=[])
    return EncodedEpisode(buffer.getvalue(), light, report, stats_json, timings, os.getpid())


class RayOffload:
    """The :class:`~robovid_watch.stages.Offload` of ``--ray``: each call runs :func:`run_task` on the cluster."""

    def __init__(self, address: str | None) -> None:
        try:
            import ray
        except ImportError as error:
            raise RemoteTaskError(
                f"--ray needs Ray, which cannot be imported ({error}). Install it with `pip install 'robovid[ray]'`."
            ) from error
        self._ray = ray
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except Exception as error:  # ConnectionError, a timeout, a version mismatch: all Ray's own
                raise RemoteTaskError(
                    f"--ray {address or '(local)'}: cannot join the Ray cluster ({type(error).__name__}: {error}). "
                    "Is it running (`ray status`), and is ADDRESS its GCS address (host:port)?"
                ) from error
        task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)(run_task)
        self._task = task.options(name=TASK_NAME)

    @property
    def cpus(self) -> int:
        """CPUs of the cluster: how many episodes are worth having in flight."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        if self._owns_connection:
            self._ray.shutdown()

    def encode_and_verify(
        self, ctx: EncodeSettings, frames: list[Path], temp: BinaryIO, fps: int, timings: dict[str, float]
    ) -> tuple[EncodeResult, VerifyReport, str | None]:
        ref = self._task.remote([str(p) for p in frames], fps, ctx.encoder, ctx.min_psnr_db)
        episode: EncodedEpisode = self._wait(ref, ctx.stop, frames[0].parent)
        temp.seek(0)
        temp.truncate()
        temp.write(episode.video)
        temp.flush()
        timings.update(episode.timings)
        return episode.result, episode.report, episode.stats_json

    def call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` as a Ray task (one CPU, retried like an episode's), its result or its own error."""
        task = self._ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)(fn)
        where = getattr(args[0], "path", None) if args else None  # an archive episode names its file
        return self._wait(task.remote(*args), threading.Event(), Path(str(where or fn.__name__)))

    def _wait(self, ref: Any, stop: StopFlag, where: Path) -> Any:
        ray = self._ray
        while not ray.wait([ref], timeout=WAIT_TICK_S)[0]:
            if stop.is_set():
                ray.cancel(ref, force=True)
                raise InterruptedError("Encoding abandoned: stop requested.")
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as error:  # the episode's own error, raised in the task: the same type
            cause = error.cause
            if isinstance(cause, Exception):
                raise cause from None
            raise RemoteTaskError(f"{where}: the Ray task failed: {error}") from error
        except ray.exceptions.RayError as error:  # worker or node lost past TASK_RETRIES, the cluster gone, ...
            raise RemoteTaskError(
                f"{where}: the Ray task was lost ({type(error).__name__}: {error}) after {TASK_RETRIES} retries. "
                "Its PNGs were kept; check the cluster (`ray status`, worker memory) and run again."
            ) from error
