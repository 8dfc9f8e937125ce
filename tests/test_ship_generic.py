"""robovid-ship needs nothing S3-specific: a whole pass against fsspec's in-memory object store.

``memory://`` is a real fsspec filesystem (fsspec's own, no mock) that, like GCS and Azure
Blob, is not S3 and has no folders to create: nothing is made with ``makedirs``, no multipart
upload exists to abort, the move is fsspec's generic copy-then-delete, and the verify reads the
bytes back. The shipper runs in this process (the filesystem lives in its memory); a root made
by the real service and robovid's export is shipped, committed and pruned in one pass, and
the store then holds every file with its bytes and the LeRobot dataset of the shipped episodes.
``file://`` (a NAS) runs as a real subprocess in test_ship_lerobot.py, test_ship_faults.py
(a full tmpfs) and test_ship_stop.py; S3 against moto's server everywhere else.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
from conftest import ShipTemplate
from lerobot_prefix import check_lerobot_prefix
from ship_harness import ROBOT, SMALL_LEROBOT, check_nothing_lost, copy_root, file_hashes, journal_states, sealed_keys

from robovid_watch.ship.config import ShipSettings
from robovid_watch.ship.shipper import Shipper
from robovid_watch.ship.store import RemoteStore


def test_one_pass_ships_commits_and_prunes_on_a_store_that_is_not_s3(
    tmp_path: Path, ship_template: ShipTemplate
) -> None:
    root = copy_root(ship_template(SMALL_LEROBOT), tmp_path / "root")
    originals = file_hashes(root)
    dest = f"memory://robovid-test-{uuid.uuid4().hex}"
    settings = ShipSettings(root=root, ship_dest=dest, ship_robot_id=ROBOT, ship_keep_gb=0, ship_part_mb=5)
    store = RemoteStore(settings.ship_dest, settings.ship_robot_id, settings.storage_options, settings.part_bytes)
    assert not store.is_local and not store.is_s3
    shipper = Shipper(settings, store)
    shipper.journal.prepare()
    fs = fsspec.filesystem("memory")
    try:
        shipper.run_pass()
        assert shipper.health.failures == 0, "a store call failed"
        assert set(journal_states(root).values()) == {"pruned"}
        prefix = store.prefix + "/"
        objects = {path.removeprefix(prefix): fs.cat_file(path) for path in fs.find(store.prefix)}
    finally:
        fs.rm(store.prefix.split("/")[0] or store.prefix, recursive=True)
        shipper.stop.close()
    check_nothing_lost(root, originals, objects)
    assert {k for k in objects if k.startswith("videos/")} == sealed_keys(root)
    assert not [k for k in objects if k.startswith(".robovid-incoming/")], "temp objects left behind"
    assert check_lerobot_prefix(objects).info["total_episodes"] == 4
