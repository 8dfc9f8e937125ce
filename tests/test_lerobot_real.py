"""The real round trip with LeRobot itself: LeRobotDataset loads what robovid wrote, every frame right.

Runs when ``ROBOVID_LEROBOT_PYTHON`` names a python with LeRobot 0.4.x (build one with
``shared/tools/lerobot-venv.sh DIR``; then ``ROBOVID_LEROBOT_PYTHON=DIR/bin/lerobot-python``), and
skips otherwise. LeRobot's side runs in that python as a subprocess (tests/lerobot_client.py, with
robovid's source on its path for the synthetic frames); robovid runs in robovid's own venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from daemon_harness import daemon_env, record, start_daemon, wait_for

from robovid.frames import read_frame_rgb
from robovid.layout import state_dir
from robovid.lerobot_export import export_dataset, exportable
from robovid.lerobot_stats import QUANTILE_KEYS, FrameStatsAccumulator
from robovid.metadata import read_segments
from robovid.synthetic import write_episode

META_FILES = ("meta/info.json", "meta/stats.json", "meta/tasks.parquet")
"""With the data, episodes and videos: all that push_to_hub may upload (robovid's state stays home)."""
LEROBOT_PYTHON = os.environ.get("ROBOVID_LEROBOT_PYTHON", "")
REPO = Path(__file__).resolve().parent.parent
CLIENT = Path(__file__).resolve().parent / "lerobot_client.py"

pytestmark = pytest.mark.skipif(
    not LEROBOT_PYTHON or shutil.which(LEROBOT_PYTHON) is None,
    reason="set ROBOVID_LEROBOT_PYTHON to a python with LeRobot 0.4.x (shared/tools/lerobot-venv.sh)",
)


def lerobot(*args: str, timeout: float = 900) -> list[dict[str, Any]]:
    """Run a tests/lerobot_client.py command in LeRobot's python; its JSON events."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOVID_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [LEROBOT_PYTHON, str(CLIENT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _by_event(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {event["event"]: event for event in events}


def test_an_exported_root_loads_in_lerobot_with_every_frame_right(tmp_path: Path) -> None:
    record(tmp_path, ["observation.images.front", "observation.images.wrist"], range(3), num_frames=12, size=(160, 120))
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text('{"fps": 10}')
    done = subprocess.run(
        [sys.executable, "-m", "robovid_watch.cli", "process", str(tmp_path), "--no-progress"],
        env=daemon_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    episodes, stopped = exportable(tmp_path, read_segments(tmp_path).to_pylist())
    assert stopped == "" and len(episodes) == 3
    export_dataset(tmp_path, episodes, fps=10, task="stack the blocks")
    results = _by_event(lerobot("load", str(tmp_path)))
    frames = 3 * 12 * 2
    assert results["dataloader"] == {"event": "dataloader", "workers": 2, "frames": frames, "wrong": 0, "episodes": 3}
    assert results["indexing"]["frames"] == frames and results["indexing"]["wrong"] == 0
    assert results["indexing"]["backend"] == "torchcodec"
    assert results["delta_timestamps"]["frames"] == 3 * frames and results["delta_timestamps"]["wrong"] == 0


def test_a_merge_of_two_robots_loads_in_lerobot_with_every_frame_from_its_source(tmp_path: Path) -> None:
    """Two robots' roots (episodes 0-1 each, each exported with its task) merged: LeRobot loads 4 episodes,
    each frame its source's, each episode with its robot's task."""
    cameras = ["observation.images.front", "observation.images.wrist"]
    for name, episodes, vcodec in (("robot_a", range(2), "libsvtav1"), ("robot_b", range(2), "h264")):
        root = tmp_path / name
        record(root, cameras, episodes, num_frames=12, size=(160, 120))
        (root / "meta").mkdir()
        (root / "meta" / "info.json").write_text('{"fps": 10}')
        done = subprocess.run(
            [sys.executable, "-m", "robovid_watch.cli", "process", str(root), "--no-progress"],
            env=daemon_env(root, ROBOVID_VCODEC=vcodec, ROBOVID_VIDEO_FILE_SIZE_MB="0.02"),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        exported = subprocess.run(
            [sys.executable, "-m", "robovid_watch.cli", "lerobot", str(root), "--task", f"task of {name}"],
            env=daemon_env(root),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert exported.returncode == 0, exported.stderr[-2000:]
    dest = tmp_path / "merged"
    command = [sys.executable, "-m", "robovid_watch.cli", "merge", str(dest), str(tmp_path / "robot_a")]
    command += [str(tmp_path / "robot_b"), "--no-progress"]
    done = subprocess.run(command, env=daemon_env(dest), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = _by_event(lerobot("load", str(dest), "--episode-map", json.dumps({2: 0, 3: 1})))
    frames = 4 * 12 * 2
    assert results["dataloader"] == {"event": "dataloader", "workers": 2, "frames": frames, "wrong": 0, "episodes": 4}
    assert results["indexing"]["frames"] == frames and results["indexing"]["wrong"] == 0
    assert results["indexing"]["tasks"] == {"0": "task of robot_a", "1": "task of robot_a", "2": "task of robot_b",
                                            "3": "task of robot_b"}  # fmt: skip
    assert results["delta_timestamps"]["frames"] == 3 * frames and results["delta_timestamps"]["wrong"] == 0


def test_two_roots_lerobot_recorded_merge_into_one_dataset_lerobot_loads_with_every_frame_and_row_right(
    tmp_path: Path,
) -> None:
    """LeRobot records two robots (encoding the video itself, as lerobot-record does); robovid merges them;
    LeRobot loads the result: every frame and every state/action row is its source episode's, and the same
    check counts every frame of a deliberately swapped mapping wrong. The statistics equal LeRobot's own
    aggregate of the sources' (the renumbered index columns are recomputed: LeRobot's would be the sources')."""
    robots = {"robot_a": (100, "task a"), "robot_b": (200, "task b")}
    for name, (robot, task) in robots.items():
        args = ["--episodes", "2", "--frames", "12", "--reset-s", "0", "--encode", "--robot", str(robot)]
        lerobot("record", str(tmp_path / name), *args, "--task", task)
    dest = tmp_path / "merged"
    command = [sys.executable, "-m", "robovid_watch.cli", "merge", str(dest), *(str(tmp_path / n) for n in robots)]
    done = subprocess.run([*command, "--no-progress"], env=daemon_env(dest), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    mapping = {0: 100, 1: 101, 2: 200, 3: 201}
    results = _by_event(lerobot("load", str(dest), "--episode-map", json.dumps(mapping)))
    frames = 4 * 12 * 2
    assert results["dataloader"] == {"event": "dataloader", "workers": 2, "frames": frames, "wrong": 0, "episodes": 4}
    assert results["indexing"]["frames"] == frames and results["indexing"]["wrong"] == 0
    assert results["indexing"]["tasks"] == {"0": "task a", "1": "task a", "2": "task b", "3": "task b"}
    assert results["data_rows"] == {"event": "data_rows", "rows": 48, "wrong": 0, "total_frames": 48}
    assert results["delta_timestamps"]["frames"] == 3 * frames and results["delta_timestamps"]["wrong"] == 0
    swapped = _by_event(lerobot("load", str(dest), "--episode-map", json.dumps(mapping | {0: 101, 1: 100})))
    assert swapped["indexing"]["wrong"] == 2 * 12 * 2 and swapped["data_rows"]["wrong"] == 2 * 12
    theirs = _by_event(lerobot("aggregate-stats", *(str(tmp_path / n / "meta" / "stats.json") for n in robots)))
    ours = json.loads((dest / "meta" / "stats.json").read_text())
    for feature, stats in theirs["aggregate"]["stats"].items():
        if feature in ("episode_index", "index", "task_index"):
            continue
        for key, value in stats.items():
            # LeRobot keeps float32 data's episode statistics in float32 (std 3.4520528316...): float32's precision
            np.testing.assert_allclose(ours[feature][key], value, rtol=1e-6, atol=1e-12, err_msg=f"{feature} {key}")
    assert ours["index"]["max"] == [47] and ours["episode_index"]["max"] == [3]


def test_frame_statistics_equal_lerobots_own_except_its_wrapped_std(tmp_path: Path) -> None:
    frames = write_episode(tmp_path / "episode-000000", 0, 150, width=640, height=480, seed=5, marker=None)
    accumulator = FrameStatsAccumulator(len(frames))
    for index, path in enumerate(frames):
        accumulator.add(index, read_frame_rgb(path))
    ours = accumulator.stats()
    theirs = {k: np.array(v) for k, v in _by_event(lerobot("stats", *map(str, frames)))["stats"]["stats"].items()}
    assert theirs["count"].tolist() == ours["count"].tolist() == [100]
    for key in ("min", "max", "mean", *QUANTILE_KEYS):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-12, atol=0, err_msg=key)
    assert theirs["std"].tolist() == [[[0.0]], [[0.0]], [[0.0]]]  # LeRobot 0.4.4 squares uint8 pixels (wraps)
    assert float(ours["std"].min()) > 0.05


def test_robovid_watch_beside_a_lerobot_recording_makes_a_dataset_lerobot_loads(tmp_path: Path) -> None:
    """LeRobot records (PNGs kept, a reset phase before each save, one discarded take) while robovid-watch runs.

    The service's settle time is shorter than LeRobot's reset phase, so a settle rule alone would
    take the PNGs before save_episode reads them. LeRobot's writes must all succeed, and its rows,
    statistics and info keys must be exactly what it wrote.
    """
    root = tmp_path / "dataset"
    recording = _start_recording(root, "--episodes", "3", "--frames", "20", "--reset-s", "2", "--retake", "1")
    events = recording.events
    wait_for(lambda: any(e["event"] == "created" for e in events), "LeRobot created the dataset", timeout=600)
    daemon = start_daemon(root, ROBOVID_LEROBOT_ENCODE="1", ROBOVID_SETTLE_S="0.2", ROBOVID_LEROBOT_QUIET_S="1")

    def refused() -> list[dict[str, Any]]:
        failed = daemon.events_named("episode_failed")
        return [e for e in failed if e["error_type"] == "LeRobotLengthMismatchError"]

    try:
        code, stderr = recording.finish(timeout=900)
        assert code == 0, stderr
        wait_for(lambda: len(refused()) == 2, "the discarded take's extra frames refused", daemon=daemon)
        assert {e["episode"] for e in refused()} == {1}
        for folder in root.glob("images/*/episode-000001"):
            for index in range(20, 25):
                (folder / f"frame-{index:06d}.png").unlink()
        complete = "lerobot_metadata_complete"
        wait_for(lambda: bool(daemon.events_named(complete)), "LeRobot metadata complete", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    saved = [e["row"] for e in events if e["event"] == "saved"]
    table = pq.read_table(next(root.glob("meta/episodes/*/*.parquet")))
    for row, written in zip(saved, table.to_pylist(), strict=True):
        assert {k: written[k] for k in row} == row
    info = json.loads((root / "meta" / "info.json").read_text())
    for key in [k for k, f in info["features"].items() if f["dtype"] == "video"]:
        assert info["features"][key].pop("info")["video.codec"] == "h264"  # the service's default
    finalized = next(e for e in events if e["event"] == "finalized")["info"]
    assert info == finalized
    uploaded = _by_event(lerobot("upload-list", str(root)))["upload_list"]["files"]
    assert state_dir(root).is_dir() and "meta/info.json" in uploaded
    assert all(name.startswith(("data/", "meta/episodes/", "videos/")) or name in META_FILES for name in uploaded), (
        uploaded
    )
    results = _by_event(lerobot("load", str(root)))
    frames = 3 * 20 * 2
    assert results["dataloader"]["frames"] == frames and results["dataloader"]["wrong"] == 0
    assert results["indexing"]["frames"] == frames and results["indexing"]["wrong"] == 0
    assert results["delta_timestamps"]["frames"] == 3 * frames and results["delta_timestamps"]["wrong"] == 0


@dataclass
class Recording:
    """tests/lerobot_client.py record, running; its events collected as they arrive."""

    process: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    thread: threading.Thread | None = None

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the recorder's exit: its exit code and the end of its stderr."""
        code = self.process.wait(timeout=timeout)
        if self.thread is not None:
            self.thread.join(timeout=60)
        assert self.process.stdout is not None and self.process.stderr is not None
        stderr = self.process.stderr.read()[-4000:]
        self.process.stdout.close()
        self.process.stderr.close()
        return code, stderr


def _start_recording(root: Path, *args: str) -> Recording:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOVID_")}
    command = [LEROBOT_PYTHON, str(CLIENT), "record", str(root), *args]
    process = subprocess.Popen(
        command, env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    recording = Recording(process)

    def collect() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("{"):
                recording.events.append(json.loads(line))

    recording.thread = threading.Thread(target=collect, daemon=True)
    recording.thread.start()
    return recording


def test_importing_robovid_beside_lerobot_prints_no_feature_overwrite(tmp_path: Path) -> None:
    for result in (e for e in lerobot("imports") if e["event"] == "imports"):
        assert result["returncode"] == 0, result
        assert "Overwriting feature type" not in result["stderr"], result["order"]
