"""Chunk files moved under the service, and frames no row claims.

A chunk file moved away while the service runs: before, its name was given to a new file, so
the old rows silently decoded other episodes' frames and ``robovid verify`` reported nothing.
Now a name that committed rows use is never reused (``chunk_missing``, the next file is
started), ``verify`` reports those rows as missing until the file is put back, and it reports
every run of chunk frames that no row claims.
"""

from __future__ import annotations

import json
from pathlib import Path

from daemon_harness import Daemon, PointHooks, rows_by_key, run_cli, start_daemon, wait_for
from frame_oracle import Ledger, check_frames

from robovid.append import append_video
from robovid.encode import encode_frames
from robovid.layout import chunk_path, episode_dir
from robovid.synthetic import write_episode
from robovid_watch.config import Settings


def _clean_run(root: Path, ledger: Ledger, committed: int) -> Daemon:
    daemon = start_daemon(root)
    try:
        wait_for(lambda: len(rows_by_key(root)) == committed, f"{committed} episodes committed", daemon=daemon)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.stderr[-20:]
    return daemon


def _verify(root: Path) -> tuple[int, list[str]]:
    result = run_cli("verify", str(root), "--json", root=root)
    report = json.loads(result.stdout)
    return result.returncode, [
        f"{p.get('video_key')} {p.get('episode_index')}: {p['problem']}" for p in report["problems"]
    ]


def test_moving_the_current_chunk_file_away_never_lets_its_name_be_reused(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    for episode in range(2):
        ledger.write_episode("cam", episode)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 2, "two episodes committed", daemon=daemon)
        first = chunk_path(tmp_path, "cam", 0, 0)
        wait_for(lambda: not episode_dir(tmp_path, "cam", 1).exists(), "episode 1 cleaned", daemon=daemon)
        aside = tmp_path / "aside.mp4"
        first.rename(aside)
        ledger.write_episode("cam", 2)
        wait_for(lambda: ("cam", 2) in rows_by_key(tmp_path), "episode 2 committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    row = rows_by_key(tmp_path)[("cam", 2)][0]
    assert (row["chunk_index"], row["file_index"]) != (0, 0), "the name of the moved file was reused"
    code, problems = _verify(tmp_path)
    assert code == 1 and len(problems) == 2 and all("missing" in p for p in problems), problems
    aside.rename(first)  # the operator puts it back
    assert _verify(tmp_path) == (0, [])
    check_frames(tmp_path, ledger, final=True)


def _encode_episode(workdir: Path, episode: int) -> Path:
    frames = write_episode(workdir / f"png-{episode}", episode, 8, 64, 48)
    video = workdir / f"episode-{episode}.mp4"
    encode_frames(frames, video, 30, Settings(root=workdir).encoder_settings())  # the service's codec setup
    return video


def test_verify_reports_chunk_frames_no_row_claims(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    for episode in range(2):
        ledger.write_episode("cam", episode)
    for episode in range(2):
        ledger.write_episode("other", episode)
    daemon = _clean_run(tmp_path, ledger, committed=4)
    assert daemon.process.returncode == 0
    assert _verify(tmp_path) == (0, [])
    append_video(chunk_path(tmp_path, "cam", 0, 0), _encode_episode(tmp_path / "work", 7))  # no row claims it
    code, problems = _verify(tmp_path)
    assert code == 1 and any("16..23" in p and "no row" in p for p in problems), problems


def test_a_chunk_file_moved_away_during_an_append_is_not_recreated_under_its_name(
    tmp_path: Path, points: PointHooks
) -> None:
    """Moved between the moment the service counted its frames and the append (found by the adversarial
    suite): before, the append created a new file under the name, the rows of its episodes named it, and
    moving the old file back over it lost those episodes (their PNGs already deleted)."""
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    daemon = start_daemon(tmp_path, **points.env)
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(tmp_path), "episode 0 committed", daemon=daemon)
        points.hold("stage:after-intent")
        ledger.write_episode("cam", 1)
        points.wait_passes("stage:after-intent", 2, daemon)  # episode 1 counted the file and journaled
        first = chunk_path(tmp_path, "cam", 0, 0)
        aside = tmp_path / "aside.mp4"
        first.rename(aside)
        points.release("stage:after-intent")
        wait_for(lambda: ("cam", 1) in rows_by_key(tmp_path), "episode 1 committed", daemon=daemon)
        wait_for(lambda: not episode_dir(tmp_path, "cam", 1).exists(), "episode 1 cleaned", daemon=daemon)
        aside.rename(first)  # the operator puts it back
    finally:
        assert daemon.stop() == 0
    row = rows_by_key(tmp_path)[("cam", 1)][0]
    assert (row["chunk_index"], row["file_index"]) != (0, 0), "a new file took the moved file's name"
    check_frames(tmp_path, ledger, final=True)
