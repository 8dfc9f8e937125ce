"""robovid-ship under faults: kill -9 mid-upload, the network cut mid-transfer, a full store, corrupt objects.

The store is moto's S3 server on 127.0.0.1 (through s3fs, no mocks), or for the full store a
``file://`` destination on a small tmpfs mounted by the test: moto enforces no quota or bucket
policy on writes, and a file system that runs out of space is what a full NAS is. After every
fault, :func:`ship_harness.check_nothing_lost` holds: each original file is local and intact,
or committed and intact in the store. At the end every sealed file is committed exactly once,
intact, and no temp object or unfinished multipart upload is left.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import ShipTemplate
from daemon_harness import wait_for
from prom import metric, read_metrics
from s3server import FaultProxy, MotoServer
from ship_harness import (
    BIG,
    SMALL,
    Bucket,
    check_fully_shipped,
    check_nothing_lost,
    copy_root,
    file_hashes,
    journal_states,
    s3_dest,
    sealed_keys,
    start_shipper,
)
from tmpfs import resize, small_tmpfs

from robovid.layout import chunk_key, list_chunks
from robovid_watch.finished import seal
from robovid_watch.ship.manifest import MANIFEST_KEY
from robovid_watch.ship.store import INCOMING

MiB = 1024 * 1024


def test_kill_9_mid_multipart_upload_resumes_without_a_duplicate_or_a_leftover(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate
) -> None:
    root = copy_root(ship_template(BIG), tmp_path / "root")
    originals = file_hashes(root)
    (big,) = sealed_keys(root)
    assert (root / big).stat().st_size > 6 * MiB, "more than one 5 MiB part"
    bucket = Bucket(s3_server, s3_server.new_bucket())
    proxy = FaultProxy(s3_server.port).start()
    proxy.upload_rate = 2 * MiB  # a slow uplink, so the kill lands while parts are in flight
    first = start_shipper(root, s3_dest(bucket.name), proxy.url)
    try:
        proxy.wait_for_sent(int(5.2 * MiB))
        wait_for(lambda: bucket.open_multipart_uploads() != [], "a multipart upload in progress", daemon=first)
    finally:
        first.kill()  # SIGKILL mid-upload
    assert bucket.open_multipart_uploads(), "the killed upload is still open (S3 keeps it until it is aborted)"
    assert big not in bucket.objects(), "a killed multipart upload never shows as an object"
    check_nothing_lost(root, originals, bucket.objects())
    proxy.upload_rate = None
    second = start_shipper(root, s3_dest(bucket.name), proxy.url)
    try:
        wait_for(lambda: journal_states(root) == {big: "pruned"}, "shipped after the restart", daemon=second)
    finally:
        assert second.stop() == 0
        proxy.close()
    assert [e["count"] for e in second.events_named("stale_uploads_aborted")] == [1]
    check_fully_shipped(root, originals, bucket)


def test_network_cut_mid_transfer_backs_off_keeps_working_offline_and_resumes(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate
) -> None:
    root = copy_root(ship_template(SMALL), tmp_path / "root")
    originals = file_hashes(root)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    prom = metrics_dir / "robovid_ship.prom"
    bucket = Bucket(s3_server, s3_server.new_bucket())
    proxy = FaultProxy(s3_server.port).start()
    proxy.cut_after_bytes = 9000  # about two files in: the link drops in the middle of a request
    shipper = start_shipper(root, s3_dest(bucket.name), proxy.url, ROBOVID_METRICS_DIR=str(metrics_dir))
    try:
        wait_for(lambda: len(shipper.events_named("remote_unavailable")) >= 3, "3 failed attempts", daemon=shipper)
        assert not proxy.is_up
        check_nothing_lost(root, originals, bucket.objects())
        wait_for(lambda: metric(read_metrics(prom), "robovid_ship_remote_up") == 0, "remote_up 0", daemon=shipper)
        errors_before = metric(read_metrics(prom), "robovid_ship_remote_errors_total") or 0
        assert errors_before >= 1
        # while offline, the service finishes another file: the shipper hashes it and reports it waiting
        camera = "front"
        last = list_chunks(root, camera)[-1]
        seal(root, camera, last, "idle")
        new_key = chunk_key(camera, last)
        wait_for(lambda: journal_states(root).get(new_key) == "hashed", "the new file hashed offline", daemon=shipper)
        sealed_waiting = sum((root / k).stat().st_size for k, s in journal_states(root).items() if s == "hashed")
        wait_for(
            lambda: metric(read_metrics(prom), "robovid_ship_unshipped_bytes", state="sealed") >= sealed_waiting,
            "unshipped bytes include the new file",
            daemon=shipper,
        )
        assert all((root / k).exists() for k in sealed_keys(root)), "nothing is pruned while the store is away"
        delays = [e["retry_in_s"] for e in shipper.events_named("remote_unavailable")]
        assert max(delays) <= 1.0 and delays[0] < delays[-1] + 0.5  # backs off, bounded by ROBOVID_SHIP_BACKOFF_MAX_S
        proxy.restore()
        wait_for(lambda: set(journal_states(root).values()) == {"pruned"}, "everything shipped", daemon=shipper)
        wait_for(lambda: metric(read_metrics(prom), "robovid_ship_remote_up") == 1, "remote_up 1", daemon=shipper)
    finally:
        assert shipper.stop() == 0
        proxy.close()
    assert shipper.events_named("remote_back")
    check_fully_shipped(root, originals, bucket)


@pytest.mark.parametrize(
    ("point", "corrupt"),
    [("ship:after-publish:2", True), ("ship:after-commit:1", False), ("ship:before-prune:2", False)],
)
def test_kill_9_at_each_shipping_step_loses_and_duplicates_nothing(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate, point: str, corrupt: bool
) -> None:
    root = copy_root(ship_template(SMALL), tmp_path / "root")
    originals = file_hashes(root)
    bucket = Bucket(s3_server, s3_server.new_bucket())
    first = start_shipper(root, s3_dest(bucket.name), s3_server.url, ROBOVID_FAULT_POINT=point)
    wait_for(lambda: first.process.poll() is not None, f"the kill at {point}")
    first.kill()
    assert first.process.returncode == -9
    check_nothing_lost(root, originals, bucket.objects())
    damaged = None
    if corrupt:  # the object published just before the kill, not yet read back: flip one byte
        published = [k for k in sealed_keys(root) if k in bucket.objects() and journal_states(root)[k] == "hashed"]
        assert len(published) == 1
        damaged = published[0]
        data = bytearray(bucket.objects()[damaged])
        data[len(data) // 2] ^= 0xFF
        bucket.put(damaged, bytes(data))
    second = start_shipper(root, s3_dest(bucket.name), s3_server.url)
    try:
        wait_for(lambda: set(journal_states(root).values()) == {"pruned"}, "finished after the restart", daemon=second)
    finally:
        assert second.stop() == 0
    check_fully_shipped(root, originals, bucket)
    shipped_again = {e["key"] for e in second.events_named("file_shipped")}
    if damaged is not None:
        assert damaged in shipped_again, "the corrupt object was uploaded again"
    if point.startswith("ship:after-commit"):
        assert shipped_again == set(), "committed files are not uploaded twice"


def test_a_corrupt_remote_copy_is_never_trusted_for_a_delete(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate
) -> None:
    root = copy_root(ship_template(SMALL), tmp_path / "root")
    originals = file_hashes(root)
    bucket = Bucket(s3_server, s3_server.new_bucket())
    keep = start_shipper(root, s3_dest(bucket.name), s3_server.url, ROBOVID_SHIP_KEEP_GB="1")
    try:
        wait_for(lambda: set(journal_states(root).values()) == {"committed"}, "committed, kept", daemon=keep)
    finally:
        assert keep.stop() == 0
    victim = sorted(sealed_keys(root))[0]
    data = bytearray(bucket.objects()[victim])
    data[-100] ^= 0x01  # same size: only reading it back finds it
    bucket.put(victim, bytes(data))
    prune = start_shipper(root, s3_dest(bucket.name), s3_server.url, ROBOVID_SHIP_RECHECK_S="0")
    try:
        wait_for(lambda: set(journal_states(root).values()) == {"pruned"}, "pruned after the repair", daemon=prune)
    finally:
        assert prune.stop() == 0
    order = [(e["event"], e.get("key")) for e in prune.events if e.get("key") == victim]
    assert order == [("remote_copy_damaged", victim), ("file_shipped", victim), ("local_copy_pruned", victim)]
    check_fully_shipped(root, originals, bucket)


def _directory_objects(base: Path) -> dict[str, bytes]:
    if not base.is_dir():
        return {}
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def test_a_full_store_refuses_the_upload_and_nothing_is_deleted_until_it_has_room(
    tmp_path: Path, ship_template: ShipTemplate
) -> None:
    root = copy_root(ship_template(BIG), tmp_path / "root")
    originals = file_hashes(root)
    (big,) = sealed_keys(root)
    with small_tmpfs(tmp_path / "nas", "4m") as nas:
        robot_dir = nas / "fleet" / "robot-7"
        shipper = start_shipper(root, f"file://{nas}/fleet")
        try:
            wait_for(lambda: len(shipper.events_named("remote_unavailable")) >= 2, "refused twice", daemon=shipper)
            details = [e["detail"] for e in shipper.events_named("remote_unavailable")]
            assert all("No space left on device" in d for d in details), details
            assert (root / big).exists() and journal_states(root) == {big: "hashed"}
            check_nothing_lost(root, originals, _directory_objects(robot_dir))
            assert not (robot_dir / big).exists(), "no partial file under the final name"
            resize(nas, "64m")
            wait_for(lambda: journal_states(root) == {big: "pruned"}, "shipped once there is room", daemon=shipper)
        finally:
            assert shipper.stop() == 0
        remote = _directory_objects(robot_dir)
        check_nothing_lost(root, originals, remote)
        assert hashlib.sha256(remote[big]).hexdigest() == originals[big]
        assert not [k for k in remote if k.startswith(f"{INCOMING}/") and not k.endswith("/")], "temp files left"


def test_the_server_killed_mid_transfer_and_back_empty_costs_no_local_file(
    tmp_path: Path, ship_template: ShipTemplate
) -> None:
    root = copy_root(ship_template(SMALL), tmp_path / "root")
    originals = file_hashes(root)
    server = MotoServer().start()
    proxy = FaultProxy(server.port).start()
    try:
        bucket = Bucket(server, server.new_bucket())
        proxy.upload_rate = 20_000  # a slow link, so the server dies with a request in flight
        keep_all = start_shipper(root, s3_dest(bucket.name), proxy.url, ROBOVID_SHIP_KEEP_GB="1")
        try:
            wait_for(lambda: len(keep_all.events_named("file_shipped")) >= 2, "two files shipped", daemon=keep_all)
            server.kill()  # the store's process dies, and with it every object moto kept in memory
            wait_for(lambda: len(keep_all.events_named("remote_unavailable")) >= 2, "failures", daemon=keep_all)
            check_nothing_lost(root, originals, {})
            assert all((root / k).exists() for k in sealed_keys(root))
            server.start(port=server.port)  # back, empty: the bucket is created again, nothing in it
            server.client().create_bucket(Bucket=bucket.name)
            proxy.upload_rate = None
            wait_for(lambda: set(journal_states(root).values()) == {"committed"}, "all committed", daemon=keep_all)
        finally:
            assert keep_all.stop() == 0
        lost = {e["key"] for e in keep_all.events_named("remote_copy_damaged")}
        assert len(lost) >= 2, "files published before the crash were found gone before the commit listed them"
        assert lost <= {e["key"] for e in keep_all.events_named("file_shipped")[2:]}, "and were uploaded again"
        prune = start_shipper(root, s3_dest(bucket.name), proxy.url, ROBOVID_SHIP_RECHECK_S="0")
        try:
            wait_for(lambda: set(journal_states(root).values()) == {"pruned"}, "all pruned", daemon=prune)
        finally:
            assert prune.stop() == 0
        check_fully_shipped(root, originals, bucket)
    finally:
        proxy.close()
        server.kill()


def test_a_damaged_remote_manifest_stops_shipping_and_deleting_until_it_is_fixed(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate
) -> None:
    root = copy_root(ship_template(SMALL), tmp_path / "root")
    originals = file_hashes(root)
    bucket = Bucket(s3_server, s3_server.new_bucket())
    bucket.put(MANIFEST_KEY, b'{"format": "robovid-ship-manifest", "version": 1, "files": [')  # cut short
    shipper = start_shipper(root, s3_dest(bucket.name), s3_server.url)
    try:
        wait_for(lambda: len(shipper.events_named("remote_unavailable")) >= 2, "refused twice", daemon=shipper)
        assert "move it aside" in shipper.events_named("remote_unavailable")[0]["detail"]
        assert set(bucket.objects()) == {MANIFEST_KEY}, "nothing shipped over a manifest it cannot read"
        assert all((root / k).exists() for k in sealed_keys(root))
        s3_server.client().delete_object(Bucket=bucket.name, Key=bucket.prefix + MANIFEST_KEY)  # moved aside
        wait_for(lambda: set(journal_states(root).values()) == {"pruned"}, "shipped once it is gone", daemon=shipper)
    finally:
        assert shipper.stop() == 0
    check_fully_shipped(root, originals, bucket)


def test_a_new_file_under_a_shipped_name_never_overwrites_the_committed_object(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate
) -> None:
    root = copy_root(ship_template(SMALL), tmp_path / "root")
    bucket = Bucket(s3_server, s3_server.new_bucket())
    shipper = start_shipper(root, s3_dest(bucket.name), s3_server.url)
    try:
        wait_for(lambda: set(journal_states(root).values()) == {"pruned"}, "shipped and pruned", daemon=shipper)
        reused, other = sorted(sealed_keys(root))[:2]
        committed = bucket.objects()[reused]
        (root / reused).write_bytes(bucket.objects()[other])  # the name comes back with other bytes
        wait_for(lambda: bool(shipper.events_named("remote_key_conflict")), "the conflict reported", daemon=shipper)
    finally:
        assert shipper.stop() == 0
    assert bucket.objects()[reused] == committed, "the committed object is untouched"
    assert (root / reused).exists(), "and the local file is kept"
    assert journal_states(root)[reused] == "hashed"
