"""robovid-ship's stop request is safe to make from a signal handler (real signals, a real process).

A SIGTERMed shipper once stayed alive for 44 minutes: its handler called ``threading.Event.set()``
while the main thread was inside that event's ``wait`` holding the event's lock, so ``set()``
waited for its own thread forever. Here a second process sends SIGUSR1 every half millisecond
to a process whose main thread does nothing but wait on the stop request, as the shipper's loop
does between passes; each signal's handler sets the request, as robovid-ship's SIGTERM handler
does. The process must finish and say how many signals it handled. The same script with
``threading.Event`` (``EVENT=threading``) deadlocked in 3 runs of 3 (killed at the deadline).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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

SCRIPT = r"""
import os, signal, subprocess, sys, threading, time
from robovid_watch.ship.stopping import StopRequest

stop = threading.Event() if os.environ.get("EVENT") == "threading" else StopRequest()
handled = 0

def on_signal(signum, frame):
    global handled
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # one handler at a time, as with one SIGTERM
    handled += 1
    stop.set()
    signal.signal(signal.SIGUSR1, on_signal)

signal.signal(signal.SIGUSR1, on_signal)
seconds = float(sys.argv[1])
sender = subprocess.Popen([sys.executable, "-c", f'''
import os, signal, time
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    os.kill({os.getpid()}, signal.SIGUSR1)
    time.sleep(0.0005)
'''])
end = time.monotonic() + seconds
while time.monotonic() < end or sender.poll() is None:
    stop.wait(0.001)
print(f"handled {handled}", flush=True)
"""


def test_a_stop_requested_by_a_signal_handler_never_deadlocks_the_waiting_main_thread() -> None:
    env = dict(os.environ)
    env.pop("EVENT", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "3"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    handled = int(done.stdout.split()[-1])
    assert handled > 100, done.stdout  # the signals did arrive while it waited


def test_a_stop_request_wakes_a_wait_from_another_thread_and_stays_set() -> None:
    import threading

    from robovid_watch.ship.stopping import StopRequest

    stop = StopRequest()
    try:
        assert not stop.is_set()
        assert stop.wait(0) is False
        threading.Timer(0.05, stop.set).start()
        assert stop.wait(120) is True  # returns when set, long before the bound
        assert stop.is_set() and stop.wait(120) is True
    finally:
        stop.close()


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
