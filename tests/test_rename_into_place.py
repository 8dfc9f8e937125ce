"""An episode folder staged under another name and renamed into place is picked up from the rename event.

Before, only the event's source path was looked at (``.episode-000000.partial``, not an episode),
so the episode waited for the next full rescan (``ROBOVID_RESCAN_S``, 30 s by default).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_harness import rows_by_key, start_daemon, wait_for
from frame_oracle import Ledger, check_frames

from robovid.layout import episode_dir

LONG_RESCAN = {"ROBOVID_RESCAN_S": "600"}
"""Only the file event can make the service look before the test's deadline."""


@pytest.mark.parametrize("staging", ["hidden_name_in_the_camera_folder", "outside_images"])
def test_an_episode_folder_renamed_into_place_is_picked_up_from_the_rename_event(tmp_path: Path, staging: str) -> None:
    ledger = Ledger(tmp_path)
    (tmp_path / "images" / "cam").mkdir(parents=True)
    daemon = start_daemon(tmp_path, **LONG_RESCAN)
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        if staging == "outside_images":
            stage = tmp_path / "staging" / "episode-000000"
        else:
            stage = tmp_path / "images" / "cam" / ".episode-000000.partial"
        ledger.write_episode("cam", 0, folder=stage)
        final = episode_dir(tmp_path, "cam", 0)
        stage.rename(final)
        ledger.moved[stage] = final
        wait_for(
            lambda: ("cam", 0) in rows_by_key(tmp_path),
            "committed well before the next rescan",
            timeout=45,
            daemon=daemon,
        )
    finally:
        assert daemon.stop() == 0
    check_frames(tmp_path, ledger)
