"""`robovid process ROOT --ray ADDRESS` on a real local Ray cluster: every frame once, whatever is killed.

The cluster is started by this module (``ray.init(address="local")``: 2 CPUs, worker processes,
its own short temp folder, bound to 127.0.0.1) and shared by its tests; drivers are real
`robovid process --ray` processes that join it by address, so killing a driver leaves the
cluster up, as on a real one. The frame oracle (tests/frame_oracle.py) judges every case: each
frame is in exactly one committed segment or still on disk as its original PNG; after a rerun,
every frame is in a segment and no chunk holds a frame no row claims.
"""

from __future__ import annotations

import os

# Ray reads this once, when it is imported: every process of the tests' cluster (and of the drivers, which
# inherit it) then uses 127.0.0.1 instead of the machine's interface address.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from daemon_harness import PointHooks, daemon_env, run_cli, wait_for
from frame_oracle import Ledger, check_frames
from prom import metric, read_metrics

from robovid_watch.ray_offload import TASK_NAME
from robovid_watch.state import RootState

try:
    import ray
except ImportError as error:  # a venv built before ray joined the dev extra: `make setup` installs it
    if os.environ.get("ROBOVID_REQUIRE_SYSTEM_TOOLS") == "1":
        raise
    pytest.skip(f"ray is not installed here ({error}); `make setup` installs it", allow_module_level=True)

CAMERAS = ("a", "b")
FRAMES = 6
TASK_POINT = "ray:task"
RAY_TIMEOUT_S = 300


@dataclass(frozen=True)
class Cluster:
    address: str
    points: PointHooks


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One local cluster for the module; its workers count and hold at test points (the drivers do not)."""
    points = tmp_path_factory.mktemp("ray_points")
    temp_dir = tempfile.mkdtemp(prefix="rv-ray-", dir="/tmp")  # short: Ray's unix sockets live in it
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROBOVID_TEST_POINTS", str(points))  # inherited by the workers; daemon_env drops it for drivers
        patch.setenv("SVT_LOG", "1")
        context = ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=temp_dir,
        )
        try:
            address = context.address_info["gcs_address"]
            assert address.startswith("127.0.0.1:"), f"Ray bound to {address}, not to loopback"
            yield Cluster(address, PointHooks(points))
        finally:
            ray.shutdown()
            _kill_leftovers(temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)


def _kill_leftovers(temp_dir: str) -> None:
    """This cluster's processes that outlived it (Ray's agents), found by its temp folder in their command line.

    Only those: other people's Ray processes on the machine are left alone (never `ray stop`)."""
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if temp_dir in " ".join(process.info["cmdline"] or []):
                process.kill()
        except psutil.Error:
            continue


def driver(root: Path, cluster: Cluster, *args: str, **env: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "robovid_watch.cli", "process", str(root), "--ray", cluster.address]
    return subprocess.Popen(
        [*command, "--no-progress", *args],
        env=daemon_env(root, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_driver(root: Path, cluster: Cluster, *args: str, **env: str) -> tuple[int, str]:
    process = driver(root, cluster, *args, **env)
    out, err = process.communicate(timeout=RAY_TIMEOUT_S)
    return process.returncode, out + err


def recording(root: Path, episodes: range) -> Ledger:
    ledger = Ledger(root)
    for episode in episodes:
        for camera in CAMERAS:
            ledger.write_episode(camera, episode, FRAMES)
    return ledger


def task_workers() -> list[psutil.Process]:
    """Ray workers running an episode's task now (Ray titles the process after the task while it runs)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline and cmdline[0].startswith(f"ray::{TASK_NAME}"):
            found.append(process)
    return found


def test_process_with_ray_encodes_every_episode_on_the_workers(tmp_path: Path, cluster: Cluster) -> None:
    ledger = recording(tmp_path, range(3))
    before = cluster.points.passes(TASK_POINT)
    code, output = run_driver(tmp_path, cluster)
    assert code == 0, output[-3000:]
    assert "done 6, failed 0" in output
    check_frames(tmp_path, ledger, final=True)
    # The drivers run without test hooks: every pass through the task's point was a Ray worker's.
    assert cluster.points.passes(TASK_POINT) - before == 6


def test_an_episode_error_on_a_worker_fails_that_episode_only(tmp_path: Path, cluster: Cluster) -> None:
    """The task's own error comes back as its type (CorruptFrameError), recorded as without Ray; PNGs kept."""
    ledger = recording(tmp_path, range(2))
    broken = tmp_path / "images" / "a" / "episode-000001" / "frame-000003.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    code, output = run_driver(tmp_path, cluster)
    assert code == 1, output[-3000:]
    failures = RootState(tmp_path).failures()
    assert [(f.camera, f.episode, f.error_type) for f in failures] == [("a", 1, "CorruptFrameError")]
    ledger.written.pop(next(k for k in ledger.written if (k.camera, k.episode, k.frame) == ("a", 1, 3)))
    ledger.attempted = {k for k in ledger.attempted if (k.camera, k.episode, k.frame) != ("a", 1, 3)}
    verdict = check_frames(tmp_path, ledger)
    assert {(k.camera, k.episode) for k in verdict.as_png} == {("a", 1)}


def test_a_worker_killed_mid_task_loses_nothing_and_appends_nothing_twice(tmp_path: Path, cluster: Cluster) -> None:
    ledger = recording(tmp_path, range(2))
    cluster.points.hold(TASK_POINT)
    before = cluster.points.passes(TASK_POINT)
    process = driver(tmp_path, cluster, "--workers", "1")  # one task in flight: the one held, so the one killed
    try:
        wait_for(lambda: cluster.points.passes(TASK_POINT) > before, "a task at its hold point")
        held = task_workers()
        assert len(held) == 1, f"{len(held)} Ray workers run an episode's task; expected the held one"
        held[0].send_signal(signal.SIGKILL)
        held[0].wait(timeout=30)
        check_frames(tmp_path, ledger)
    finally:
        cluster.points.release(TASK_POINT)
    out, err = process.communicate(timeout=RAY_TIMEOUT_S)
    assert process.returncode == 0, (out + err)[-3000:]
    check_frames(tmp_path, ledger, final=True)
    assert cluster.points.passes(TASK_POINT) - before == 4 + 1, "Ray ran the killed task once more"


def test_a_task_lost_past_its_retries_is_not_held_against_the_episode(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, cluster: Cluster
) -> None:
    """Its worker killed at every try (1 + TASK_RETRIES): the episode is not recorded as failed, its PNGs stay,
    the run exits 1 naming the lost task, and the next run takes the episode. (Within a run, a rescan would
    take it again too: rescans are an hour apart here so that this run leaves it.) It is visible meanwhile:
    `robovid status` lists it as deferred with the reason, and the failed-attempts counter counts it."""
    from robovid_watch.ray_offload import TASK_RETRIES

    ledger = recording(tmp_path, range(1))
    cluster.points.hold(TASK_POINT)
    before = cluster.points.passes(TASK_POINT)
    metrics = tmp_path_factory.mktemp("metrics")
    process = driver(tmp_path, cluster, "--workers", "1", ROBOVID_RESCAN_S="3600", ROBOVID_METRICS_DIR=str(metrics))
    try:
        for attempt in range(1 + TASK_RETRIES):
            wait_for(lambda n=attempt: cluster.points.passes(TASK_POINT) > before + n, f"try {attempt + 1} held")
            wait_for(lambda: len(task_workers()) == 1, "its worker")
            victim = task_workers()[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
        cluster.points.release(TASK_POINT)  # the other camera's episode goes through
        out, err = process.communicate(timeout=RAY_TIMEOUT_S)
    finally:
        cluster.points.release(TASK_POINT)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, (out + err)[-3000:]
    assert "episode_not_encoded" in out + err and "after 3 retries" in out + err, (out + err)[-3000:]
    assert RootState(tmp_path).failures() == []
    verdict = check_frames(tmp_path, ledger)
    assert len({(k.camera, k.episode) for k in verdict.as_png}) == 1, (out + err)[-6000:]
    (lost,) = {(k.camera, k.episode) for k in verdict.as_png}
    report = _status(tmp_path)
    assert report["failed"] == [], report
    assert [(d["camera"], d["episode"], d["error_type"]) for d in report["deferred"]] == [(*lost, "RemoteTaskError")]
    assert "after 3 retries" in report["deferred"][0]["reason"], report
    assert metric(read_metrics(metrics / "robovid_watch.prom"), "robovid_episodes_failed_total") == 1
    code, output = run_driver(tmp_path, cluster)
    assert code == 0, output[-3000:]
    check_frames(tmp_path, ledger, final=True)
    assert _status(tmp_path)["deferred"] == [], "the episode done, its deferral is gone"


def _status(root: Path) -> dict[str, Any]:
    done = run_cli("status", "--json", str(root), root=root)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize(
    "point",
    [
        "stage:after-encode:2",  # a task's result is back, nothing written; the other task in flight dies too
        "append:before-flip:2",  # mid-append: samples and the new movie box written, not yet live
        "stage:after-commit:3",  # committed, PNGs not yet cleaned
    ],
)
def test_the_driver_killed_then_rerun_loses_nothing(tmp_path: Path, cluster: Cluster, point: str) -> None:
    ledger = recording(tmp_path, range(3))
    code, output = run_driver(tmp_path, cluster, ROBOVID_FAULT_POINT=point)
    assert code == -signal.SIGKILL, f"{point} was never reached: {output[-3000:]}"
    check_frames(tmp_path, ledger)
    code, output = run_driver(tmp_path, cluster)
    assert code == 0, output[-3000:]
    check_frames(tmp_path, ledger, final=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        "stage:after-intent:1",
        "stage:after-append:3",
        "commit:before-rename:2",
        "clean:unlink:5",
        "clean:before-rmdir:4",
    ],
)
def test_the_driver_killed_then_rerun_loses_nothing_stress(tmp_path: Path, cluster: Cluster, point: str) -> None:
    test_the_driver_killed_then_rerun_loses_nothing(tmp_path, cluster, point)


def test_without_ray_installed_the_option_says_what_to_install(tmp_path: Path) -> None:
    """`--ray` in an interpreter where `import ray` fails: exit 78 with the install command (no cluster needed)."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('ray is not installed here')\n")
    env = daemon_env(tmp_path, PYTHONPATH=os.pathsep.join([str(blocker), *sys.path]))
    command = [sys.executable, "-m", "robovid_watch.cli", "process", str(tmp_path), "--ray", "127.0.0.1:1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 78, done.stderr[-2000:]
    assert "pip install 'robovid[ray]'" in done.stderr


def test_convert_with_ray_reencodes_on_a_worker(tmp_path: Path, cluster: Cluster) -> None:
    """`robovid convert SRC DEST --ray`: the archive episode robovid cannot append (an audio track) is re-encoded
    as a Ray task (the worker passes the point; the driver has no hooks), the others are copied."""
    from lerobot_v21 import KEYS, check_converted, video_path, write_archive, write_mp4

    src, dest = tmp_path / "src", tmp_path / "dest"
    write_archive(src, {0: FRAMES, 1: FRAMES})
    for episode in range(2):
        for key in KEYS:
            write_mp4(video_path(src, episode, key), episode, FRAMES, audio=(episode, key) == (1, KEYS[0]))
    before = cluster.points.passes("convert:reencoded")
    command = [sys.executable, "-m", "robovid_watch.cli", "convert", str(src), str(dest), "--ray", cluster.address]
    done = subprocess.run(command, env=daemon_env(dest), capture_output=True, text=True, timeout=RAY_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 episode(s) copied, 1 re-encoded" in done.stdout
    assert cluster.points.passes("convert:reencoded") - before == 1
    check_converted(dest, range(2), FRAMES)
