"""A change of fps or frame size between episodes starts a new chunk file, said as information, not as damage.

Before e1db3e8/0f9f66c, the episode that could not be appended to the camera's file was logged as
an error about a damaged chunk (``chunk_skipped``), although a new file is the right response and
nothing is wrong with the old one. Now the old file is finished (``chunk_file_finished``, info),
and its detail names what differs, not "Cannot append None" (an episode encoded in memory has no path).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_harness import rows_by_key, start_daemon, wait_for
from frame_oracle import Ledger, check_frames


@pytest.mark.parametrize("change", ["fps", "size"])
def test_a_change_of_fps_or_frame_size_between_episodes_starts_a_new_chunk_file_quietly(
    tmp_path: Path, change: str
) -> None:
    ledger = Ledger(tmp_path)
    info = tmp_path / "meta" / "info.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"fps": 30}))
    ledger.write_episode("cam", 0)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(tmp_path), "episode 0 committed", daemon=daemon)
        if change == "fps":
            info.write_text(json.dumps({"fps": 15}))
        else:
            ledger.size = (96, 64)
        ledger.write_episode("cam", 1)
        wait_for(lambda: ("cam", 1) in rows_by_key(tmp_path), "episode 1 committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    rows = rows_by_key(tmp_path)
    first, second = rows[("cam", 0)][0], rows[("cam", 1)][0]
    assert (first["chunk_index"], first["file_index"]) != (second["chunk_index"], second["file_index"])
    problems = [e for e in daemon.events if e.get("level") in ("error", "warning")]
    assert not problems, f"a format change was reported as a problem: {problems}"
    (finished,) = daemon.events_named("chunk_file_finished")
    assert finished["reason"] and "None" not in finished["detail"], finished
    check_frames(tmp_path, ledger, final=True)
