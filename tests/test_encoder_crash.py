"""A native crash (a segfault in the encoder library) on one episode does not stop the service for every other one.

The real daemon is crashed by a real SIGSEGV at a named point (``ROBOVID_FAULT_POINT=name:n:segv``),
only while it works on a chosen episode (``ROBOVID_FAULT_EPISODE``): like input that crashes the
encoder, it crashes the service at every start. Each test restarts the daemon as systemd would.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from daemon_harness import (
    Daemon,
    Episode,
    PointHooks,
    finish_and_check,
    png_digest,
    record,
    rows_by_key,
    run_cli,
    run_daemon,
    start_daemon,
    wait_for,
)

from robovid_watch.crashguard import PARK_AFTER_CRASHES

POISON = 1
SEGV_ON_POISON = {"ROBOVID_FAULT_POINT": "encode:frame:1:segv", "ROBOVID_FAULT_EPISODE": str(POISON)}
MAX_STARTS = 6


def _status(root: Path) -> dict[str, Any]:
    result = run_cli("status", str(root), "--json", root=root)
    assert result.returncode == 0, result.stderr[-2000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _until_poison_parked(root: Path, others: list[Episode], workers: int) -> tuple[Daemon, list[Daemon]]:
    """Start the daemon again after each crash, as systemd does: the daemon still running, and those that crashed."""
    crashed: list[Daemon] = []
    for _ in range(MAX_STARTS):
        daemon = start_daemon(root, ROBOVID_WORKERS=str(workers), **SEGV_ON_POISON)
        wait_for(
            lambda d=daemon: d.process.poll() is not None or (_poison_parked(root) and _all_done(root, others)),
            "a crash, or the poison episode parked and the others done",
        )
        if daemon.process.poll() is None:
            return daemon, crashed
        assert daemon.process.wait() == -signal.SIGSEGV, daemon.stderr[-20:]
        daemon.kill()
        crashed.append(daemon)
    raise AssertionError(f"still crashing after {MAX_STARTS} starts")


def _poison_parked(root: Path) -> bool:
    return any(f["episode"] == POISON for f in _status(root)["failed"])


def _all_done(root: Path, episodes: list[Episode]) -> bool:
    rows = rows_by_key(root)
    return all((e.camera, e.index) in rows and png_digest(root, e) is None for e in episodes)


def test_a_poison_episode_is_parked_with_its_pngs_and_every_other_episode_is_done(tmp_path: Path) -> None:
    episodes = record(tmp_path, ["cam"], range(4))
    poison = next(e for e in episodes if e.index == POISON)
    others = [e for e in episodes if e is not poison]
    original = png_digest(tmp_path, poison)
    daemon, crashed = _until_poison_parked(tmp_path, others, workers=1)
    try:
        assert len(crashed) == PARK_AFTER_CRASHES
        (failed,) = daemon.events_named("episode_failed")
        assert failed["error_type"] == "EncoderCrashedError" and failed["episode"] == POISON
        (started,) = daemon.events_named("started")
        assert len(started["crash_logs"]) == PARK_AFTER_CRASHES
    finally:
        assert daemon.stop() == 0
    assert png_digest(tmp_path, poison) == original, "the poison episode's PNGs are kept as they were"
    report = _status(tmp_path)
    (failure,) = report["failed"]
    assert failure["error_type"] == "EncoderCrashedError"
    assert "PNGs were kept" in failure["reason"] and "ROBOVID_VCODEC" in failure["reason"]
    assert len(report["crash_logs"]) == PARK_AFTER_CRASHES
    for log in report["crash_logs"]:
        assert log in failure["reason"], "the failure names the crash logs"
        assert "Segmentation fault" in Path(log).read_text(), "the kept log holds faulthandler's traceback"
    assert "encode" in Path(report["crash_logs"][-1]).read_text(), "the traceback shows the encode"
    human = run_cli("status", str(tmp_path), root=tmp_path).stdout
    assert f"'cam' episode {POISON}: " in human and report["crash_logs"][-1] in human, human
    assert daemon.events_named("stopped")[0]["crash_logs"] == report["crash_logs"]


def test_with_two_workers_the_episode_in_flight_beside_the_poison_one_completes(tmp_path: Path) -> None:
    """The crash lands while the innocent episode is held in flight; it is not parked, and the poison one
    then runs alone (nothing else in flight) until it is parked."""
    episodes = record(tmp_path, ["cam"], range(2))
    innocent = next(e for e in episodes if e.index != POISON)
    hooks = PointHooks(tmp_path / "points")
    hooks.directory.mkdir()
    for episode in episodes:
        hooks.hold("stage:before-encode", episode.index)
    first = start_daemon(tmp_path, ROBOVID_WORKERS="2", **SEGV_ON_POISON, **hooks.env)
    try:
        hooks.wait_passes("stage:before-encode", 2, first)  # both in flight, their markers written
        hooks.release("stage:before-encode", POISON)
        wait_for(lambda: first.process.poll() is not None, "the poison episode crashes the daemon")
        assert first.process.wait() == -signal.SIGSEGV, first.stderr[-20:]
    finally:
        first.kill()
        hooks.release("stage:before-encode", innocent.index)
    daemon, crashed = _until_poison_parked(tmp_path, [innocent], workers=2)
    try:
        found = [e for d in [*crashed, daemon] for e in d.events_named("native_crash_found")]
        assert [[(b["episode"], b["sure"]) for b in e["blamed"]] for e in found] == [[(POISON, True)]] * len(found)
        assert {innocent.index, POISON} <= {e["episode"] for e in found[0]["in_flight"]}
    finally:
        assert daemon.stop() == 0
    report = _status(tmp_path)
    assert [(f["episode"], f["error_type"]) for f in report["failed"]] == [(POISON, "EncoderCrashedError")]
    assert report["crash_suspects"] == [], "the innocent episode holds no crash record once done"
    assert _all_done(tmp_path, [innocent])
    assert 1 + len(crashed) == PARK_AFTER_CRASHES, "the crash beside a neighbour counted against the poison alone"


def test_the_suspect_runs_alone_after_a_crash_with_a_neighbour_in_flight(tmp_path: Path) -> None:
    """After a crash, the episode that was in flight starts only once nothing else is in flight."""
    record(tmp_path, ["cam"], range(4))
    result = run_daemon(tmp_path, timeout=120, ROBOVID_WORKERS="2", **SEGV_ON_POISON)
    assert result.returncode == -signal.SIGSEGV, result.stderr[-2000:]
    daemon = start_daemon(tmp_path, ROBOVID_WORKERS="2")
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 4, "every episode committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    in_flight: set[int] = set()
    for event in daemon.events:
        if event.get("event") == "episode_started":
            assert not in_flight or not event["alone"], f"{event} started beside {in_flight}"
            assert event["alone"] == (event["episode"] == POISON), event
            in_flight.add(event["episode"])
        elif event.get("event") in ("episode_done", "episode_cleaned"):
            in_flight.discard(event["episode"])
        if POISON in in_flight:
            assert in_flight == {POISON}, f"the suspect ran beside {in_flight - {POISON}}"
    assert _status(tmp_path)["crash_suspects"] == []


def test_kill_9_during_the_same_episode_never_parks_it(tmp_path: Path) -> None:
    """kill -9 (or a power cut) leaves no crash file: the episode is retried as always, however often."""
    episodes = record(tmp_path, ["cam"], range(3))
    originals = {e: png_digest(tmp_path, e) or "" for e in episodes}
    for _ in range(PARK_AFTER_CRASHES + 1):
        result = run_daemon(
            tmp_path,
            timeout=120,
            ROBOVID_WORKERS="1",
            ROBOVID_FAULT_POINT="encode:frame:1",
            ROBOVID_FAULT_EPISODE=str(POISON),
        )
        assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
        assert (episodes[0].camera, 0) in rows_by_key(tmp_path), "the kill hits the chosen episode only"
        assert (episodes[0].camera, POISON) not in rows_by_key(tmp_path)
    report = _status(tmp_path)
    assert report["failed"] == [] and report["crash_suspects"] == [] and report["crash_logs"] == []
    finish_and_check(tmp_path, episodes, originals)
    assert _status(tmp_path)["failed"] == []


def test_a_one_off_crash_completes_the_episode_on_the_next_run(tmp_path: Path) -> None:
    episodes = record(tmp_path, ["cam"], range(3))
    originals = {e: png_digest(tmp_path, e) or "" for e in episodes}
    result = run_daemon(tmp_path, timeout=120, ROBOVID_WORKERS="1", **SEGV_ON_POISON)
    assert result.returncode == -signal.SIGSEGV, result.stderr[-2000:]
    assert [s["episode"] for s in _status(tmp_path)["crash_suspects"]] == [], "judged at the next start"
    daemon = finish_and_check(tmp_path, episodes, originals)
    (found,) = daemon.events_named("native_crash_found")
    assert [b["episode"] for b in found["blamed"]] == [POISON]
    report = _status(tmp_path)
    assert report["failed"] == [] and report["crash_suspects"] == []
    assert report["crash_logs"] == [found["crash_log"]]
    assert daemon.events_named("started")[0]["crash_logs"] == report["crash_logs"]
