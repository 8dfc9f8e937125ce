"""The adversarial suite: random rounds of what users, recorders and operators really do, one oracle.

Each round runs the real service (marker or settle mode, chosen by the round's seed) and applies a
random sequence of *acts* to its root: recorder habits (sidecar files, a folder staged under
another name and renamed into place, clocks an hour behind or a day ahead, a re-take written into a
committed episode's folder, a recorder pausing longer than the settle time), operator habits (a
second instance, the lock file deleted, a chunk file moved away and back, a concurrent
``robovid verify``), kill -9 at a random moment, and damaged state (a journal intent truncated
after a kill between append and commit). After every act, and at the end once ``robovid process``
has finished what is left, the frame oracle (:func:`frame_oracle.check_frames`) holds: every frame
in exactly one committed segment or still on disk as its original PNG; at the end, no chunk frame
that no row claims.

CI runs a fixed sample of two short rounds (``-m adversarial`` runs the suite alone); ``make stress``
runs ``ROBOVID_ADVERSARIAL_ROUNDS`` (default 12) rounds that each apply every act once, in a random
order, plus a few more. A failing round names its seed: rerun it with
``pytest tests/test_adversarial_suite.py -k "seed_N"``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from daemon_harness import Daemon, rows_by_key, run_cli, run_daemon, start_daemon, wait_for
from frame_oracle import Ledger, PausingRecorder, check_frames

from robovid.layout import episode_dir, images_dir, journal_dir, list_chunks, lock_path

CAMERA = "cam"
HOUR_NS = 3600 * 10**9


@dataclass
class Round:
    root: Path
    ledger: Ledger
    rng: random.Random
    settle: bool
    daemon: Daemon | None = None
    next_episode: int = 0
    expected: set[int] = field(default_factory=set)
    """Episodes written complete and unremarkable: the end of the round must find them committed."""
    log: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"ROBOVID_SETTLE_S": "1"} if self.settle else {}

    def start(self) -> None:
        self.daemon = start_daemon(self.root, **self.env)
        wait_for(lambda: bool(self.daemon and self.daemon.events_named("started")), "started", daemon=self.daemon)

    def stop(self) -> None:
        if self.daemon is not None:
            assert self.daemon.stop() == 0, self.daemon.stderr[-20:]
            self.daemon = None

    def episode(self) -> int:
        self.next_episode += 1
        return self.next_episode - 1

    def committed(self, episode: int, timeout: float = 120) -> None:
        wait_for(
            lambda: (CAMERA, episode) in rows_by_key(self.root), f"episode {episode} committed", timeout, self.daemon
        )


Act = Callable[[Round], None]


def plain(r: Round) -> None:
    episode = r.episode()
    r.ledger.write_episode(CAMERA, episode)
    r.expected.add(episode)


def sidecars(r: Round) -> None:
    episode = r.episode()
    folder = r.ledger.write_episode(CAMERA, episode, marker=None)
    (folder / "timestamps.json").write_text("[]")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "depth").mkdir()
    (folder / "depth" / "frame-000000.png").write_bytes(b"not this camera's frame")
    (folder / ".complete").touch()
    r.expected.add(episode)


def staged_rename(r: Round) -> None:
    episode = r.episode()
    final = episode_dir(r.root, CAMERA, episode)
    staged = final.parent / f".{final.name}.partial"
    r.ledger.write_episode(CAMERA, episode, folder=staged)
    staged.rename(final)
    r.ledger.moved[staged] = final
    for key, (path, digest) in list(r.ledger.written.items()):
        if path.parent == staged:
            r.ledger.written[key] = (final / path.name, digest)
    r.expected.add(episode)


def clock_behind(r: Round) -> None:
    episode = r.episode()
    r.ledger.write_episode(CAMERA, episode, mtime_ns=time.time_ns() - HOUR_NS)
    r.expected.add(episode)


def clock_ahead(r: Round) -> None:
    episode = r.episode()
    r.ledger.write_episode(CAMERA, episode, mtime_ns=time.time_ns() + 24 * HOUR_NS)
    r.expected.add(episode)


def retake_into_committed(r: Round) -> None:
    """A new take recorded into a committed episode's folder, without ``robovid retake``: kept as PNG."""
    episode = r.episode()
    r.ledger.write_episode(CAMERA, episode)
    r.committed(episode)
    folder = episode_dir(r.root, CAMERA, episode)
    wait_for(lambda: not any(folder.glob("frame-*.png")), f"episode {episode} cleaned", daemon=r.daemon)
    r.ledger.write_episode(CAMERA, episode, folder=folder, burnt_episode=1000 + episode)


def pausing_recorder(r: Round) -> None:
    """Settle mode: a pause longer than the settle time; marker mode: a pause without consequence."""
    episode = r.episode()
    recorder = PausingRecorder(r.ledger, CAMERA, episode, num_frames=6, pause_after=3, pause_s=3.0).start()
    recorder.join()
    assert recorder.lost == [], f"the recorder could not write frames {recorder.lost}"
    if not r.settle:
        (episode_dir(r.root, CAMERA, episode) / ".complete").touch()
        r.expected.add(episode)


def kill9(r: Round) -> None:
    if r.daemon is None:
        return
    time.sleep(r.rng.uniform(0.0, 1.5))  # a random moment, whatever the service is doing then (not a wait for it)
    r.daemon.kill()
    r.daemon = None
    r.start()


def second_instance(r: Round) -> None:
    result = run_daemon(r.root, timeout=120, **r.env)
    assert result.returncode != 0, f"a second instance ran: {result.stdout[-2000:]}"


def lock_file_deleted(r: Round) -> None:
    with_lock = lock_path(r.root)
    if with_lock.exists():
        with_lock.unlink()
    second_instance(r)


def chunk_moved_away_and_back(r: Round) -> None:
    chunks = list_chunks(r.root, CAMERA)
    if not chunks:
        return plain(r)
    current = chunks[-1].path(r.root, CAMERA)
    aside = r.root / f"aside-{current.parent.name}-{current.name}"
    current.rename(aside)
    episode = r.episode()
    r.ledger.write_episode(CAMERA, episode)
    r.committed(episode)
    aside.rename(current)
    r.expected.add(episode)
    return None


def concurrent_verify(r: Round) -> None:
    result = run_cli("verify", str(r.root), root=r.root)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


def damaged_intent(r: Round) -> None:
    """A kill between append and commit, then the intent truncated (a disk that lost its tail)."""
    r.stop()
    episode = r.episode()
    r.ledger.write_episode(CAMERA, episode)
    killed = run_daemon(r.root, timeout=300, ROBOVID_FAULT_POINT="stage:after-append:1", ROBOVID_WORKERS="1", **r.env)
    intents = list(journal_dir(r.root).glob("*.json"))
    if killed.returncode == -signal.SIGKILL and intents:
        data = intents[0].read_bytes()
        intents[0].write_bytes(data[: len(data) // 2])
    r.expected.add(episode)
    r.start()


ACTS: dict[str, Act] = {
    act.__name__: act
    for act in (
        plain,
        sidecars,
        staged_rename,
        clock_behind,
        clock_ahead,
        retake_into_committed,
        pausing_recorder,
        kill9,
        second_instance,
        lock_file_deleted,
        chunk_moved_away_and_back,
        concurrent_verify,
        damaged_intent,
    )
}


def run_round(root: Path, seed: int, acts: int, every_act: bool = False) -> None:
    """``acts`` random acts; with ``every_act``, each act once first (in a random order), then the rest."""
    rng = random.Random(seed)
    r = Round(root, Ledger(root), rng, settle=rng.random() < 0.5)
    images_dir(root).mkdir(parents=True)
    plan = rng.sample(sorted(ACTS), len(ACTS)) if every_act else []
    plan += [rng.choice(sorted(ACTS)) for _ in range(max(0, acts - len(plan)))]
    r.start()
    try:
        for name in plan:
            r.log.append(f"{name}@{r.next_episode}")
            ACTS[name](r)
            try:
                check_frames(root, r.ledger)
            except AssertionError as error:
                raise AssertionError(
                    f"seed {seed}, {'settle' if r.settle else 'marker'} mode, acts {r.log}: {error}"
                ) from None
    finally:
        if r.daemon is not None:
            r.daemon.stop()
    finished = run_cli("process", str(root), "--no-progress", root=root)
    assert "Traceback" not in finished.stderr, finished.stderr[-3000:]
    try:
        check_frames(root, r.ledger, final=True)
    except AssertionError as error:
        raise AssertionError(
            f"seed {seed}, {'settle' if r.settle else 'marker'} mode, acts {r.log}, at the end: {error}"
        ) from None
    missing = sorted(e for e in r.expected if (CAMERA, e) not in rows_by_key(root))
    assert not missing, (
        f"seed {seed} ({'settle' if r.settle else 'marker'} mode, acts {r.log}): {missing} not committed"
    )


CI_SEEDS = [1, 2]


@pytest.mark.adversarial
@pytest.mark.parametrize("seed", CI_SEEDS, ids=lambda s: f"seed_{s}")
def test_adversarial_sample(tmp_path: Path, seed: int) -> None:
    run_round(tmp_path / "root", seed, acts=5)


@pytest.mark.slow
@pytest.mark.adversarial
@pytest.mark.parametrize(
    "seed",
    range(100, 100 + int(os.environ.get("ROBOVID_ADVERSARIAL_ROUNDS", "12"))),
    ids=lambda s: f"seed_{s}",
)
def test_adversarial_rounds(tmp_path: Path, seed: int) -> None:
    run_round(tmp_path / "root", seed, acts=len(ACTS) + 4, every_act=True)
