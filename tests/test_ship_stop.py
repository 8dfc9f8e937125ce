"""robovid-ship stops within its unit's TimeoutStopSec, even while a store request is stalled.

Its stop request, shared with robovid-watch, is proven safe in a signal handler by
tests/test_stop_signals.py (a storm of real signals).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from conftest import ShipTemplate
from daemon_harness import wait_for
from s3server import FaultProxy, MotoServer
from ship_harness import ROBOT, SMALL, Bucket, check_nothing_lost, copy_root, file_hashes, s3_dest, start_shipper

from robovid_watch.stop_signals import STOP_SIGNALS

UNIT_TIMEOUT_STOP_S = 90.0
"""systemd/robovid-ship.service's TimeoutStopSec: past it systemd kills the shipper."""


def test_a_shipper_stopped_while_a_store_request_is_stalled_exits_within_the_units_stop_timeout(
    tmp_path: Path, s3_server: MotoServer, ship_template: ShipTemplate
) -> None:
    """The relay takes the first 4 KiB of each request, then stalls (1 byte/s): the endpoint is silent.

    Before robovid-ship bounded its stop, it exited 205 s after SIGTERM (s3fs's timeouts and retries).
    """
    root = copy_root(ship_template(SMALL), tmp_path / "root")
    originals = file_hashes(root)
    bucket = Bucket(s3_server, s3_server.new_bucket())
    proxy = FaultProxy(s3_server.port).start()
    proxy.upload_rate = 1.0
    shipper = start_shipper(root, s3_dest(bucket.name), proxy.url)
    try:
        wait_for(lambda: bool(shipper.events_named("started")), "started", daemon=shipper)
        wait_for(lambda: proxy.sent_bytes > 0, "a store request in flight", daemon=shipper)
        started = time.monotonic()
        assert shipper.stop(timeout=UNIT_TIMEOUT_STOP_S - 10) == 0
        took = time.monotonic() - started
        print(f"stop took {took:.1f} s after SIGTERM")
    finally:
        if shipper.process.poll() is None:
            shipper.kill()
        proxy.close()
    assert shipper.events_named("stopped"), shipper.stderr[-5:]
    assert shipper.events_named("stop_forced")  # the stall outlasted the grace: the stop did not wait for it
    assert took < UNIT_TIMEOUT_STOP_S - 10
    check_nothing_lost(root, originals, bucket.objects())


@pytest.mark.parametrize("signum", sorted(STOP_SIGNALS), ids=lambda s: signal.Signals(s).name)
def test_each_stop_signal_stops_the_shipper_with_its_stopped_event(
    tmp_path: Path, ship_template: ShipTemplate, signum: int
) -> None:
    """SIGHUP (a closed terminal, a careless ``kill -1``) stops robovid-ship like SIGTERM and SIGINT, as it
    stops robovid-watch: exit 0 and its ``stopped`` event. Before, SIGHUP's default action killed it with
    no event. The shipper waits between passes (an hour here) when the signal comes."""
    root = copy_root(ship_template(SMALL), tmp_path / "root")
    originals = file_hashes(root)
    nas = tmp_path / "nas"
    nas.mkdir()
    shipper = start_shipper(root, nas.as_uri(), ROBOVID_SHIP_INTERVAL_S="3600")
    try:
        wait_for(lambda: bool(shipper.events_named("committed")), "a commit", daemon=shipper)
        shipper.process.send_signal(signum)
        code = shipper.process.wait(timeout=UNIT_TIMEOUT_STOP_S - 10)
    finally:
        if shipper.process.poll() is None:
            shipper.kill()
        shipper.stop()
    assert code == 0, shipper.stderr[-5:]
    assert shipper.events_named("stopped"), shipper.stderr[-5:]
    assert not shipper.events_named("stop_forced")
    check_nothing_lost(root, originals, _local_objects(nas / ROBOT))


def _local_objects(prefix: Path) -> dict[str, bytes]:
    return {p.relative_to(prefix).as_posix(): p.read_bytes() for p in prefix.rglob("*") if p.is_file()}
