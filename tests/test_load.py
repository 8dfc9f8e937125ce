"""The real robovid-watch under load: a large backlog drained with bounded memory, and a live recorder.

The backlog case reports the daemon's peak resident memory (``VmHWM`` from
``/proc/<pid>/status``, read just before it is stopped) in the test output and in
``/tmp/robovid-load-backlog-<episodes>.json``. The CI run drains 150 episodes x 3
cameras; ``make stress`` (``-m slow``) drains 1000 x 3.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from daemon_harness import Episode, check_invariants, png_digest, record, rows_by_key, start_daemon, wait_for

from robovid.synthetic import simulate_recorder

CAMERAS = ["front", "wrist", "top"]
MAX_PEAK_RSS_MB = 600


def _status_kb(pid: int) -> dict[str, int]:
    """The memory lines of /proc/<pid>/status (VmHWM, VmRSS, ...) in kB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.startswith("Vm") and rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0])
    return values


def _assert_verify_passes(root: Path) -> None:
    cli = Path(sys.executable).with_name("robovid")
    result = subprocess.run([str(cli), "verify", str(root)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def _drain_backlog(root: Path, num_episodes: int, capsys: pytest.CaptureFixture[str]) -> None:
    episodes: list[Episode] = []
    for index in range(num_episodes):  # 2 or 3 frames
        episodes += record(root, CAMERAS, range(index, index + 1), num_frames=2 + index % 2)
    originals = {e: png_digest(root, e) or "" for e in episodes}
    started = time.monotonic()
    daemon = start_daemon(root)
    try:
        wait_for(
            lambda: len(daemon.events_named("episode_done")) >= len(episodes),
            f"{len(episodes)} episode_done events",
            timeout=120 + len(episodes) * 0.5,
            daemon=daemon,
        )
        drain_s = time.monotonic() - started
        memory = _status_kb(daemon.process.pid)
    finally:
        code = daemon.stop()
    assert code == 0
    report = {
        "episodes": num_episodes,
        "cameras": len(CAMERAS),
        "segments": len(episodes),
        "drain_s": round(drain_s, 1),
        "peak_rss_mb": round(memory["VmHWM"] / 1024, 1),
        "rss_at_end_mb": round(memory["VmRSS"] / 1024, 1),
    }
    Path(f"/tmp/robovid-load-backlog-{num_episodes}.json").write_text(json.dumps(report, indent=2))
    with capsys.disabled():
        print(f"\nbacklog drained: {json.dumps(report)}")
    rows = rows_by_key(root)
    missing = {(e.camera, e.index) for e in episodes} - set(rows)
    assert not missing, f"{len(missing)} episodes missed, e.g. {sorted(missing)[:5]}"
    assert len(rows) == len(episodes) and not daemon.events_named("episode_failed")
    assert not any((root / "images").iterdir()), "every PNG folder is cleaned"
    check_invariants(root, episodes, originals, final=True)
    _assert_verify_passes(root)
    assert report["peak_rss_mb"] < MAX_PEAK_RSS_MB


def test_backlog_of_150_episodes_on_3_cameras_is_drained_with_none_missed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _drain_backlog(tmp_path, 150, capsys)


@pytest.mark.slow
def test_backlog_of_1000_episodes_on_3_cameras_is_drained_with_bounded_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _drain_backlog(tmp_path, 1000, capsys)


def test_a_recorder_writing_in_real_time_while_the_daemon_works_loses_nothing(tmp_path: Path) -> None:
    cameras, num_episodes, num_frames = ["front", "wrist"], 10, 15
    episodes = [Episode(camera, index, num_frames) for index in range(num_episodes) for camera in cameras]
    errors: list[BaseException] = []

    def before_the_last_episode(episode: int) -> None:
        """Hold the recorder until the daemon has finished an episode: it works while recording, on any machine."""
        if episode == num_episodes - 2:
            wait_for(lambda: bool(daemon.events_named("episode_done")), "an episode done while recording", 90, daemon)

    def recorder() -> None:
        try:
            simulate_recorder(
                tmp_path,
                cameras,
                num_episodes,
                num_frames,
                fps=30,
                width=160,
                height=120,
                on_episode=before_the_last_episode,
            )
        except BaseException as error:  # surfaced by the test thread below
            errors.append(error)

    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        thread = threading.Thread(target=recorder, name="recorder")
        thread.start()
        thread.join(timeout=120)
        assert not thread.is_alive() and not errors, errors
        done_while_recording = len(daemon.events_named("episode_done"))
        wait_for(
            lambda: len(daemon.events_named("episode_done")) >= len(episodes),
            "every recorded episode done",
            daemon=daemon,
        )
        wait_for(lambda: not any((tmp_path / "images").iterdir()), "every PNG folder cleaned", daemon=daemon)
    finally:
        code = daemon.stop()
    assert code == 0
    assert done_while_recording > 0, "the daemon did not work while the recorder was writing"
    assert set(rows_by_key(tmp_path)) == {(e.camera, e.index) for e in episodes}
    assert not daemon.events_named("episode_failed")
    check_invariants(tmp_path, episodes, {}, final=True)
    _assert_verify_passes(tmp_path)
