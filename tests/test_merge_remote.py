"""`robovid merge` from a robot's prefix in object storage (moto's S3 server on 127.0.0.1, through s3fs).

Robot B's root is uploaded the way robovid-ship lays a prefix out (its chunk files and segment table
parts under the same keys as on the robot); the merge reads it by range requests
(robovid.remote.open_video_file) and appends its frames to DEST's files by stream copy.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from daemon_harness import PointHooks, daemon_env, wait_for
from merge_harness import EXPECTED, ROBOT_A, ROBOT_B, check_lerobot, check_merged, make_robot
from s3server import CREDENTIALS, FaultProxy, MotoServer

from robovid.errors import MergeError
from robovid.layout import segments_dir, videos_dir
from robovid.merge import merge_roots


@pytest.fixture(scope="module")
def s3(s3_server: MotoServer) -> Iterator[MotoServer]:
    """The session's server, with this process's s3fs pointed at it (endpoint and test credentials)."""
    import s3fs

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": s3_server.url}.items():
            patch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        yield s3_server
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def robots(s3: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """Robot A's local root, robot B's prefix in the bucket, and robot B's local root it was uploaded from."""
    robot_a = make_robot(tmp_path_factory.mktemp("robot_a"), ROBOT_A, "libsvtav1")
    robot_b = make_robot(tmp_path_factory.mktemp("robot_b"), ROBOT_B, "h264")
    url = f"s3://{s3.new_bucket()}/fleet/robot-b"
    fs = fsspec.filesystem("s3")
    for folder in (videos_dir(robot_b), segments_dir(robot_b)):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            fs.put_file(str(path), f"{url}/{path.relative_to(robot_b).as_posix()}"[len("s3://") :])
    return robot_a, url, robot_b


def s3_env(endpoint: str) -> dict[str, str]:
    return {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_MAX_ATTEMPTS": "1"}


def merge_command(dest: Path, *sources: str) -> list[str]:
    return [sys.executable, "-m", "robovid_watch.cli", "merge", str(dest), *sources, "--task", "t", "--no-progress"]


def test_a_robots_prefix_in_s3_merges_like_its_root(tmp_path: Path, robots: tuple[Path, str, Path]) -> None:
    robot_a, url, robot_b = robots
    dest = tmp_path / "dest"
    report = merge_roots(dest, [robot_a, url], task="t")
    check_merged(dest, EXPECTED)
    check_lerobot(dest, EXPECTED, "t")
    assert report.episodes[url] == {100: 3, 101: 4}
    again = merge_roots(dest, [robot_a, url], task="t")
    assert (again.appends, again.rows_committed) == (0, 0)
    with pytest.raises(MergeError, match="holds episodes merged before"):
        merge_roots(dest, [robot_b], task="t")  # the same robot's local root: not merged twice


@pytest.mark.parametrize("point", ["append:creating:1", "merge:after-append:2", "commit:before-rename:1"])
def test_merge_from_s3_killed_then_rerun_has_every_frame_in_exactly_one_episode(
    tmp_path: Path, s3: MotoServer, robots: tuple[Path, str, Path], point: str
) -> None:
    _, url, _ = robots
    dest = tmp_path / "dest"
    env = daemon_env(dest, **s3_env(s3.url))
    killed = subprocess.run(
        merge_command(dest, url), env={**env, "ROBOVID_FAULT_POINT": point}, capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL, f"{point} was never reached: {killed.stderr[-2000:]}"
    check_merged(dest, {0: 100, 1: 101}, final=False)
    rerun = subprocess.run(merge_command(dest, url), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    check_merged(dest, {0: 100, 1: 101})


def test_the_network_cut_mid_merge_loses_nothing_and_a_rerun_finishes(
    tmp_path: Path, s3: MotoServer, robots: tuple[Path, str, Path], points: PointHooks
) -> None:
    """The store goes away after an append's intent is written: the merge stops with an error saying so (no
    traceback), DEST holds whole episodes only, and once the network is back a rerun finishes."""
    _, url, _ = robots
    dest = tmp_path / "dest"
    proxy = FaultProxy(s3.port).start()
    try:
        env = daemon_env(dest, **s3_env(proxy.url))
        points.hold("merge:after-intent")
        merging = subprocess.Popen(
            merge_command(dest, url),
            env={**env, **points.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: points.passes("merge:after-intent") >= 1, "the first remote append's intent")
            proxy.cut()
        finally:
            points.release("merge:after-intent")
        _, err = merging.communicate(timeout=600)
        assert merging.returncode == 1, f"{merging.returncode}: {err[-3000:]}"
        assert "the store failed the request" in err and "Traceback" not in err, err[-3000:]
        check_merged(dest, {0: 100, 1: 101}, final=False)
        proxy.restore()
        rerun = subprocess.run(merge_command(dest, url), env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        check_merged(dest, {0: 100, 1: 101})
    finally:
        proxy.close()
