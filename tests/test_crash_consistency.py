"""kill -9 the real daemon at named points of every stage and at random moments; nothing is lost.

After each kill: every episode is either done exactly once (one row, its frames in the
chunk, no frame unaccounted for) or untouched (no row, PNGs byte-identical). After a
clean restart: every episode is done exactly once and its PNGs are gone.

Named points (``ROBOVID_FAULT_POINT=name:n`` kills the process the n-th time it gets there):
mid-encode, after encode, after the journal intent, while a new chunk file is written, mid-append
(after the new mdat, before the commit flip), after append before commit, mid-commit (before the Parquet rename), after
commit before cleanup, mid-cleanup, after cleanup before the intent is cleared.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from daemon_harness import (
    Episode,
    check_invariants,
    finish_and_check,
    png_digest,
    record,
    rows_by_key,
    run_daemon,
    start_daemon,
    wait_for,
)
from lerobot_files import CAMERAS as LEROBOT_CAMERAS
from lerobot_files import Session

from robovid.durable import is_temp_path

EPISODES_FILE = Path("meta/episodes/chunk-000/file-000.parquet")

CAMERAS = ["a", "b"]
EPISODES = range(3)
NAMED_POINTS = [
    "encode:frame:3",
    "encode:frame:20",
    "stage:after-encode:1",
    "stage:after-encode:4",
    "stage:after-intent:1",
    "stage:after-intent:3",
    "append:creating:1",
    "append:creating:2",
    "append:after-mdat:1",
    "append:after-mdat:2",
    "append:before-flip:1",
    "append:before-flip:3",
    "stage:after-append:1",
    "stage:after-append:4",
    "commit:before-rename:1",
    "commit:before-rename:3",
    "stage:after-commit:1",
    "stage:after-commit:5",
    "clean:unlink:1",
    "clean:unlink:13",
    "clean:before-rmdir:1",
    "clean:before-rmdir:3",
    "clean:before-clear-intent:1",
    "clean:before-clear-intent:4",
]


def _recording(root: Path) -> tuple[list[Episode], dict[Episode, str]]:
    episodes = record(root, CAMERAS, EPISODES)
    return episodes, {e: png_digest(root, e) or "" for e in episodes}


@pytest.mark.parametrize("point", NAMED_POINTS)
def test_kill_at_a_named_point_then_restart_loses_nothing_and_appends_nothing_twice(tmp_path: Path, point: str) -> None:
    episodes, originals = _recording(tmp_path)
    result = run_daemon(tmp_path, timeout=120, ROBOVID_FAULT_POINT=point, ROBOVID_WORKERS="1")
    assert result.returncode == -signal.SIGKILL, f"{point} was never reached: {result.stderr[-2000:]}"
    check_invariants(tmp_path, episodes, originals, final=False)
    finish_and_check(tmp_path, episodes, originals)


SMALL_FILES = {"ROBOVID_VIDEO_FILE_SIZE_MB": "0.012"}
"""A new chunk file every two or three episodes, so kills also land in rollovers and compactions."""


def _random_kills(root: Path, kills: int, seed: int, **env: str) -> None:
    episodes, originals = _recording(root)
    rng = random.Random(seed)
    for attempt in range(kills):
        daemon = start_daemon(root, ROBOVID_WORKERS=str(rng.choice([1, 2])), **env)
        try:
            wait_for(lambda d=daemon: bool(d.events_named("started")), "started", daemon=daemon)
            time.sleep(rng.uniform(0.0, 0.8))
        finally:
            daemon.kill()
        try:
            check_invariants(root, episodes, originals, final=False)
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, kill {attempt}: {error}") from error
    finish_and_check(root, episodes, originals, **env)


def test_random_kills_ci(tmp_path: Path) -> None:
    seed = int(os.environ.get("ROBOVID_CRASH_SEED", "1234"))
    _random_kills(tmp_path, kills=8, seed=seed)


def test_random_kills_with_small_files_ci(tmp_path: Path) -> None:
    seed = int(os.environ.get("ROBOVID_CRASH_SEED", "1234"))
    _random_kills(tmp_path, kills=6, seed=seed, **SMALL_FILES)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_random_kills_stress(tmp_path: Path, seed: int) -> None:
    _random_kills(tmp_path, kills=20, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_random_kills_with_small_files_stress(tmp_path: Path, seed: int) -> None:
    _random_kills(tmp_path, kills=20, seed=seed, **SMALL_FILES)


LEROBOT_POINTS = [
    "lerobot-episodes:before-replace:1",
    "lerobot-episodes:after-replace:1",
    "lerobot-info:before-replace:1",
    "lerobot-info:after-replace:1",
]
LEROBOT_ENV = {"ROBOVID_LEROBOT_ENCODE": "1", "ROBOVID_LEROBOT_QUIET_S": "0", "ROBOVID_WORKERS": "1"}


@pytest.mark.parametrize("point", LEROBOT_POINTS)
def test_kill_while_writing_lerobots_metadata_keeps_every_lerobot_value(tmp_path: Path, point: str) -> None:
    session = Session(tmp_path)
    for index in range(2):
        session.record(index, 8)
        session.save(8)
    session.finalize()
    episodes = [Episode(camera, index, 8) for index in range(2) for camera in LEROBOT_CAMERAS]
    originals = {e: png_digest(tmp_path, e) or "" for e in episodes}
    lerobot_rows = pq.read_table(tmp_path / EPISODES_FILE)
    lerobot_info = (tmp_path / "meta" / "info.json").read_bytes()
    result = run_daemon(tmp_path, timeout=120, ROBOVID_FAULT_POINT=point, **LEROBOT_ENV)
    assert result.returncode == -signal.SIGKILL, f"{point} was never reached: {result.stderr[-2000:]}"
    check_invariants(tmp_path, episodes, originals, final=False)
    _check_lerobot_files(tmp_path, lerobot_rows, lerobot_info)
    daemon = finish_and_check(tmp_path, episodes, originals, **LEROBOT_ENV, wait_for_event="lerobot_metadata_complete")
    assert daemon.events_named("lerobot_metadata_complete")
    table = _check_lerobot_files(tmp_path, lerobot_rows, lerobot_info)
    rows = rows_by_key(tmp_path)
    for camera in LEROBOT_CAMERAS:
        assert table[f"videos/{camera}/from_timestamp"].to_pylist() == [
            rows[(camera, i)][0]["from_timestamp"] for i in (0, 1)
        ]
    assert [p for p in tmp_path.rglob("*") if is_temp_path(p)] == []


def _check_lerobot_files(root: Path, lerobot_rows: pa.Table, lerobot_info: bytes) -> pa.Table:
    """LeRobot's episodes file and info.json parse, and hold every value LeRobot wrote, unchanged."""
    table = pq.read_table(root / EPISODES_FILE)
    for name in lerobot_rows.column_names:
        assert table[name].equals(lerobot_rows[name]) and table.schema.field(name) == lerobot_rows.schema.field(name)
    info = json.loads((root / "meta" / "info.json").read_bytes())
    for feature in info["features"].values():
        feature.pop("info", None)
    assert json.dumps(info, indent=4, ensure_ascii=False).encode() == lerobot_info
    return table


EXPORT_POINTS = ["lerobot-export:after-data:1", "lerobot-export:after-episodes:2", "lerobot-export:before-info:1"]


@pytest.mark.parametrize("point", EXPORT_POINTS)
def test_kill_while_exporting_leaves_a_dataset_lerobot_can_load_and_the_restart_finishes_it(
    tmp_path: Path, point: str
) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text('{"fps": 30}')
    episodes, originals = _recording(tmp_path)
    env = {"ROBOVID_LEROBOT_EXPORT": "1", "ROBOVID_WORKERS": "1"}
    result = run_daemon(tmp_path, timeout=120, ROBOVID_FAULT_POINT=point, **env)
    assert result.returncode == -signal.SIGKILL, f"{point} was never reached: {result.stderr[-2000:]}"
    check_invariants(tmp_path, episodes, originals, final=False)
    _check_export_consistent(tmp_path)
    daemon = start_daemon(tmp_path, **env)

    def exported() -> bool:
        return json.loads((tmp_path / "meta" / "info.json").read_text()).get("total_episodes") == len(EPISODES)

    try:
        wait_for(exported, "every episode exported", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert _check_export_consistent(tmp_path) == len(EPISODES)
    assert [p for p in tmp_path.rglob("*") if is_temp_path(p)] == []


def _check_export_consistent(root: Path) -> int:
    """Every exported file parses, and info.json never counts more than the files hold; its episode count."""
    info = json.loads((root / "meta" / "info.json").read_text())
    if "codebase_version" not in info:
        return 0
    episodes = pa.concat_tables([pq.read_table(p) for p in sorted(root.glob("meta/episodes/*/*.parquet"))])
    data = pa.concat_tables([pq.read_table(p) for p in sorted(root.glob("data/*/*.parquet"))])
    assert episodes["episode_index"].to_pylist()[: info["total_episodes"]] == list(range(info["total_episodes"]))
    assert data.num_rows >= info["total_frames"]
    assert json.loads((root / "meta" / "stats.json").read_text())["index"]["count"][0] >= info["total_frames"]
    return int(info["total_episodes"])
