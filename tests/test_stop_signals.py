"""A stop request made from a signal handler never deadlocks (real signals, real processes).

robovid-watch and robovid-ship share one stop request, ``robovid_watch.stop_signals.StopRequest``.
A SIGTERMed shipper once stayed alive for 44 minutes: its handler called ``threading.Event.set()``
while the main thread was inside that event's ``wait`` holding the event's lock, so ``set()``
waited for its own thread forever. robovid-watch's handler did the same (``Service.request_stop``
set a ``threading.Event``; its main thread takes that lock in its own ``stop.set()`` when a stop
begins). Here a second process sends signals every half millisecond:

- to a process whose main thread does nothing but wait on the stop request, each signal's
  handler setting it (the same script with ``threading.Event``, ``EVENT=threading``, deadlocked
  in 3 runs of 3, killed at the deadline);
- to the real robovid-watch while a worker is held in an encode: every signal is a stop signal,
  so the storm runs through its whole stop, which must end with exit 0 and the ``stopped`` event
  within the unit's TimeoutStopSec, the held episode abandoned with its PNGs kept.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from daemon_harness import Episode, PointHooks, png_digest, record, rows_by_key, start_daemon, wait_for

from robovid_watch.stop_signals import StopRequest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "robovid-watch.service"
UNIT_TIMEOUT_STOP_S = float(re.search(r"^TimeoutStopSec=(\d+)", UNIT.read_text(), re.M).group(1))  # type: ignore[union-attr]
"""systemd/robovid-watch.service's TimeoutStopSec: past it systemd kills the service."""

STORM = r"""
import os, select, signal, sys, time
pidfd = os.pidfd_open(int(sys.argv[1]))
exited = select.poll()
exited.register(pidfd, select.POLLIN)  # a pidfd reads as ready once its process has exited
signals = [int(s) for s in sys.argv[3].split(",")]
end = time.monotonic() + float(sys.argv[2])
sent = 0
while time.monotonic() < end:
    signal.pidfd_send_signal(pidfd, signals[sent % len(signals)])
    sent += 1
    if exited.poll(0.5):
        break
print(f"sent {sent}", flush=True)
"""
"""Send signals to a pid every 0.5 ms for up to N seconds, or until it exits; print how many were sent."""

WAITER = r"""
import os, signal, subprocess, sys, threading, time
from robovid_watch.stop_signals import StopRequest

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
sender = subprocess.Popen([sys.executable, "-c", sys.argv[2], str(os.getpid()), str(seconds), str(int(signal.SIGUSR1))])
end = time.monotonic() + seconds
while time.monotonic() < end or sender.poll() is None:
    stop.wait(0.001)
print(f"handled {handled}", flush=True)
"""


def test_a_stop_requested_by_a_signal_handler_never_deadlocks_the_waiting_main_thread() -> None:
    env = dict(os.environ)
    env.pop("EVENT", None)
    done = subprocess.run(
        [sys.executable, "-c", WAITER, "3", STORM], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    handled = int(done.stdout.split()[-1])
    assert handled > 100, done.stdout  # the signals did arrive while it waited


def test_a_stop_request_wakes_a_wait_from_another_thread_and_stays_set() -> None:
    stop = StopRequest()
    try:
        assert not stop.is_set()
        assert stop.wait(0) is False
        threading.Timer(0.05, stop.set).start()
        assert stop.wait(120) is True  # returns when set, long before the bound
        assert stop.is_set() and stop.wait(120) is True
    finally:
        stop.close()


CAMERA = "cam"
EPISODES = [Episode(CAMERA, 0, 20), Episode(CAMERA, 1, 20)]


def test_robovid_watch_stops_cleanly_under_a_storm_of_stop_signals(tmp_path: Path, points: PointHooks) -> None:
    root = tmp_path / "root"
    record(root, [CAMERA], range(2), 20, (64, 48))
    originals = {e: png_digest(root, e) for e in EPISODES}
    points.hold("encode:frame")  # the stop must abandon an encode in flight: the worker is held in it
    daemon = start_daemon(root, ROBOVID_WORKERS="1", **points.env)
    numbers = ",".join(str(int(s)) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT))
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        points.wait_passes("encode:frame", 1, daemon)
        started = time.monotonic()
        storm = subprocess.run(
            [sys.executable, "-c", STORM, str(daemon.process.pid), str(UNIT_TIMEOUT_STOP_S), numbers],
            capture_output=True,
            text=True,
            timeout=UNIT_TIMEOUT_STOP_S + 60,
            check=True,
        )
        stop_s = time.monotonic() - started
        code = daemon.process.wait(timeout=1)  # the storm ends when the service has exited (or at its deadline)
    finally:
        if daemon.process.poll() is None:
            daemon.kill()  # a deadlocked service (this test's failure) must not outlive it
        points.release("encode:frame")
    daemon.stop()
    sent = int(storm.stdout.split()[-1])
    print(f"robovid-watch exited {code} {stop_s:.2f} s into a storm of {sent} stop signals")
    assert code == 0 and stop_s < UNIT_TIMEOUT_STOP_S, f"exit {code} after {stop_s:.1f} s; {daemon.stderr[-10:]}"
    assert daemon.events_named("stopped"), daemon.stderr[-10:]
    assert daemon.events_named("episode_abandoned")
    assert sent > 1
    assert not rows_by_key(root) and all(png_digest(root, e) == originals[e] for e in EPISODES)
