"""The real robovid-watch keeps the PNGs of an episode whose video shows a stale frame.

SVT-AV1 4.1 at preset 12 leaves blocks that show the previous frame's content. Forced to it
(``ROBOVID_PRESET=12``), the service must fail the episode at its verify stage, name the
frame and the tile, and leave every PNG byte-identical; at its default it must pass the same
clip, and the committed video must show every frame's own content.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
from daemon_harness import rows_by_key, start_daemon, wait_for

from robovid import fidelity
from robovid.layout import chunk_path, episode_dir

CAMERA = "wrist"
CLIP_FRAMES = 12


def _write(root: Path, episode: int) -> tuple[fidelity.Clip, dict[str, str]]:
    clip = fidelity.edges_clip(640, 480, CLIP_FRAMES)
    folder = episode_dir(root, CAMERA, episode)
    fidelity.write_clip(clip, folder)
    return clip, _digests(folder)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_stale_block_fails_the_episode_and_keeps_every_png_byte_identical(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    clip, before = _write(root, 0)
    daemon = start_daemon(root, ROBOVID_VCODEC="libsvtav1", ROBOVID_PRESET="12")
    try:
        outcome = ("episode_failed", "episode_done")
        wait_for(lambda: any(daemon.events_named(name) for name in outcome), "the episode's outcome", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert not daemon.events_named("episode_done"), "the stale video was accepted and the PNGs deleted"
    (event,) = daemon.events_named("episode_failed")
    assert (event["camera"], event["episode"], event["error_type"]) == (CAMERA, 0, "FrameMismatchError")
    assert event["mismatch"] == "stale"
    assert 1 <= event["frame"] < clip.num_frames
    tile = event["tile"]
    assert set(tile) == {"x", "y", "w", "h"}
    assert 0 <= tile["x"] < clip.width and 0 <= tile["y"] < clip.height and tile["w"] > 0 and tile["h"] > 0
    assert f"frame {event['frame']}" in event["reason"] and "previous frame" in event["reason"]
    assert "ROBOVID_PRESET" in event["action"]
    assert rows_by_key(root) == {}
    assert _digests(episode_dir(root, CAMERA, 0)) == before


def test_at_default_settings_the_same_clip_is_committed_with_every_frame_its_own(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    clip, _ = _write(root, 0)
    daemon = start_daemon(root)
    try:
        wait_for(lambda: (CAMERA, 0) in rows_by_key(root), "the episode committed", daemon=daemon)
        wait_for(lambda: not episode_dir(root, CAMERA, 0).exists(), "its PNGs deleted", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert not daemon.events_named("episode_failed")
    (row,) = rows_by_key(root)[(CAMERA, 0)]
    path = chunk_path(root, CAMERA, row["chunk_index"], row["file_index"])
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    report = fidelity.analyse(clip, decoded[row["first_frame"] : row["first_frame"] + row["num_frames"]])
    assert report.decoded_frames == clip.num_frames
    assert report.stale_count == 0, report.describe()
