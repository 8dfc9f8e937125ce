"""Bad input through the real robovid-watch: each kind fails only its own episode, clearly, and keeps its PNGs.

Invariants checked for every failing kind: exactly one ``episode_failed`` event naming the
episode folder, the file and the problem (with ``error_type`` and ``action``); its PNGs
byte-identical and no metadata row; the good episodes of the same root (two cameras) done;
and, for the representative kinds that get fixed, the episode retried and done.

Most kinds share one daemon on one root (the ``corpus`` fixture); kinds that need their own
timing (a folder deleted mid-run, frames written after the marker), their own root state
(corrupted chunk or metadata, ``meta/info.json``) or a lot of memory (8K frames) run alone.

Decisions documented here (see ``robovid/frames.py``): grey, palette and opaque RGBA frames are
converted to RGB and encoded; 16-bit and translucent frames are refused (FrameFormatError).
"""

from __future__ import annotations

import io
import json
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import psutil
import pytest
from daemon_harness import (
    DROP_FILE_PERMISSION_OVERRIDE,
    Daemon,
    Episode,
    PointHooks,
    check_invariants,
    chunk_files,
    decoded_indices,
    png_digest,
    rows_by_key,
    start_daemon,
    wait_for,
)
from PIL import Image

from robovid.decode import decode_episode_frames
from robovid.layout import chunk_path, episode_dir, segments_dir
from robovid.synthetic import burn_index, read_index, render_frame, scene, write_episode
from robovid.verify import psnr_db
from robovid_watch.state import RootState

W, H, NUM_FRAMES = 64, 48, 8
CAM = "cam"
OTHER = "front"
ODD_KEYS = ("cam ünï 'q' \"d\"", "cam\nnewline")
RESCAN_S = 0.5
KEPT = "PNGs were kept"

Key = tuple[str, int]


# bad frames ------------------------------------------------------------------------------------------
def _frame(directory: Path, index: int) -> Path:
    return directory / f"frame-{index:06d}.png"


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _truncate(directory: Path, _outside: Path) -> None:
    path = _frame(directory, 4)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_idat_byte(directory: Path, _outside: Path) -> None:
    path = _frame(directory, 4)
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT")
    length = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 + length // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _save_as_jpeg(directory: Path, _outside: Path) -> None:
    path = _frame(directory, 4)
    Image.fromarray(_rgb(path)).save(path, format="JPEG")


def _empty_file(directory: Path, _outside: Path) -> None:
    _frame(directory, 4).write_bytes(b"")


def _sixteen_bit(directory: Path, _outside: Path) -> None:
    path = _frame(directory, 4)
    grey = _rgb(path)[..., 1].astype(np.uint16) * 257
    Image.fromarray(grey).save(path)  # mode I;16: a 16-bit greyscale PNG, as depth cameras write


def _to_mode(mode: str) -> Callable[[Path, Path], None]:
    def convert(directory: Path, _outside: Path) -> None:
        for path in sorted(directory.glob("frame-*.png")):
            with Image.open(path) as image:
                converted = image.convert(mode)
            converted.save(path)

    return convert


def _translucent(directory: Path, _outside: Path) -> None:
    path = _frame(directory, 4)
    rgba = np.dstack([_rgb(path), np.full((H, W), 255, np.uint8)])
    rgba[30:40, 10:20, 3] = 128
    Image.fromarray(rgba).save(path)


def _other_size(directory: Path, _outside: Path) -> None:
    Image.fromarray(render_frame(scene(80, 60, 0), 80, 60, 0, 4)).save(_frame(directory, 4))


def _remove_frame_3(directory: Path, _outside: Path) -> None:
    _frame(directory, 3).unlink()


def _duplicate_index(directory: Path, _outside: Path) -> None:
    shutil.copyfile(_frame(directory, 1), directory / "frame-0000001.png")


def _non_numeric(directory: Path, _outside: Path) -> None:
    shutil.copyfile(_frame(directory, 2), directory / "frame-abc.png")


def _symlink_frame_out(directory: Path, outside: Path) -> None:
    target = outside / "frame-from-elsewhere.png"
    shutil.move(_frame(directory, 3), target)
    _frame(directory, 3).symlink_to(target)


@dataclass(frozen=True)
class BadKind:
    """One kind of bad episode in the shared corpus, what the daemon must say, and whether it gets fixed."""

    episode: int
    error_type: str
    words: tuple[str, ...]
    """Each must appear in the event's reason."""
    damage: Callable[[Path, Path], None] | None
    """Applied to a good episode's folder (and the outside folder); None for kinds built another way."""
    fixed: bool = False
    """Rewritten with good frames after the first failure: must then be retried and done."""


KINDS = {
    "truncated": BadKind(0, "CorruptFrameError", ("frame-000004.png", "truncated"), _truncate, fixed=True),
    "bad_crc": BadKind(1, "CorruptFrameError", ("frame-000004.png", "IDAT", "CRC"), _flip_idat_byte),
    "jpeg": BadKind(2, "CorruptFrameError", ("frame-000004.png", "JPEG"), _save_as_jpeg, fixed=True),
    "zero_byte": BadKind(3, "CorruptFrameError", ("frame-000004.png", "empty (0 bytes)"), _empty_file),
    "sixteen_bit": BadKind(4, "FrameFormatError", ("frame-000004.png", "16-bit"), _sixteen_bit, fixed=True),
    "translucent": BadKind(5, "FrameFormatError", ("frame-000004.png", "translucent", "alpha 128"), _translucent),
    "mixed_sizes": BadKind(6, "FrameSizeError", ("frame-000004.png", "80x60", "64x48"), _other_size),
    "odd_size": BadKind(7, "FrameSizeError", ("frame-000000.png", "65x49", "odd", "yuv420p"), None),
    "gap": BadKind(8, "FrameSequenceError", ("frame-000003.png", "missing frame 3"), _remove_frame_3, fixed=True),
    "duplicate": BadKind(
        9, "FrameSequenceError", ("frame-000001.png", "frame-0000001.png", "twice"), _duplicate_index, fixed=True
    ),
    "non_numeric": BadKind(10, "FrameSequenceError", ("'frame-abc.png'", "not named"), _non_numeric),
    "marker_only": BadKind(11, "EmptyEpisodeError", ("holds no frames",), None, fixed=True),
    "symlinked_frame": BadKind(
        12, "UnsafePathError", ("frame-000003.png", "outside the recording root"), _symlink_frame_out, fixed=True
    ),
    "symlinked_folder": BadKind(13, "UnsafePathError", ("outside the recording root", "symlink"), None),
}
NEWLINE_BAD: Key = (ODD_KEYS[1], 1)  # a truncated frame under a camera key holding a newline
ACCEPTED = {"grayscale": (20, "L"), "rgba_opaque": (21, "RGBA"), "palette": (22, "P")}
"""Formats converted to RGB and encoded: name -> (episode, Pillow mode every frame is saved in)."""
GOOD = [Episode(CAM, 30, NUM_FRAMES), Episode(CAM, 31, NUM_FRAMES), Episode(OTHER, 30, NUM_FRAMES)]
GOOD += [Episode(key, 0, NUM_FRAMES) for key in ODD_KEYS]
UNMARKED_EMPTY: Key = (CAM, 40)


def _write_bad(root: Path, outside: Path, kind: BadKind) -> None:
    directory = episode_dir(root, CAM, kind.episode)
    if kind.damage is not None:
        write_episode(directory, kind.episode, NUM_FRAMES, W, H)
        kind.damage(directory, outside)
    elif kind is KINDS["odd_size"]:
        write_episode(directory, kind.episode, NUM_FRAMES, W + 1, H + 1)
    elif kind is KINDS["marker_only"]:
        directory.mkdir(parents=True)
        (directory / ".complete").touch()
    else:  # symlinked_folder: a complete episode that lives outside the root
        target = outside / "episode-elsewhere"
        write_episode(target, kind.episode, NUM_FRAMES, W, H)
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.symlink_to(target, target_is_directory=True)


def _rewrite(root: Path, key: Key) -> None:
    """The operator's fix: take the marker away, replace every file with good frames, marker last."""
    directory = episode_dir(root, *key)
    (directory / ".complete").unlink()
    for entry in directory.iterdir():
        entry.unlink()  # a symlinked frame: the link goes, its outside target stays
    write_episode(directory, key[1], NUM_FRAMES, W, H)


def _tree_digest(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# the shared corpus ---------------------------------------------------------------------------------
@dataclass
class Corpus:
    """One daemon run over every bad kind beside good episodes, observed before and after the fixes."""

    root: Path
    outside: Path
    outside_files: dict[str, bytes]
    written: dict[Key, str | None]
    """PNG digest of each bad episode as written."""
    before_fix_digests: dict[Key, str | None]
    before_fix_rows: set[Key]
    final_digests: dict[Key, str | None]
    rows: dict[Key, list[dict[str, Any]]]
    events: list[dict[str, Any]]
    exit_code: int

    def failures(self, key: Key) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "episode_failed" and (e["camera"], e["episode"]) == key]


def _bad_keys() -> list[Key]:
    return [(CAM, kind.episode) for kind in KINDS.values()] + [NEWLINE_BAD]


def _fixed_keys() -> list[Key]:
    return [(CAM, kind.episode) for kind in KINDS.values() if kind.fixed]


def _done_episodes() -> list[Episode]:
    """Every episode that must end with a row: good, accepted formats, fixed."""
    accepted = [Episode(CAM, index, NUM_FRAMES) for index, _mode in ACCEPTED.values()]
    return GOOD + accepted + [Episode(camera, index, NUM_FRAMES) for camera, index in _fixed_keys()]


def _write_corpus(root: Path, outside: Path) -> None:
    for kind in KINDS.values():
        _write_bad(root, outside, kind)
    newline_dir = episode_dir(root, *NEWLINE_BAD)
    write_episode(newline_dir, NEWLINE_BAD[1], NUM_FRAMES, W, H, seed=3)
    _truncate(newline_dir, outside)
    for index, mode in ACCEPTED.values():
        directory = episode_dir(root, CAM, index)
        write_episode(directory, index, NUM_FRAMES, W, H)
        _to_mode(mode)(directory, outside)
    for seed, episode in enumerate(GOOD):
        write_episode(episode_dir(root, episode.camera, episode.index), episode.index, NUM_FRAMES, W, H, seed=seed)
    episode_dir(root, *UNMARKED_EMPTY).mkdir(parents=True)


def _digest(root: Path, key: Key) -> str | None:
    return png_digest(root, Episode(key[0], key[1], NUM_FRAMES))


def _failed_keys(daemon: Daemon) -> set[Key]:
    return {(e["camera"], e["episode"]) for e in daemon.events_named("episode_failed")}


def _done(root: Path, episodes: list[Episode]) -> bool:
    rows = rows_by_key(root)
    return all((e.camera, e.index) in rows and png_digest(root, e) is None for e in episodes)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    base = tmp_path_factory.mktemp("bad_input")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    _write_corpus(root, outside)
    outside_files = _tree_digest(outside)
    written = {key: _digest(root, key) for key in _bad_keys()}
    points = PointHooks(tmp_path_factory.mktemp("points"))
    daemon = start_daemon(root, ROBOVID_RESCAN_S=str(RESCAN_S), **points.env)
    try:
        first_done = [e for e in _done_episodes() if (e.camera, e.index) not in _fixed_keys()]
        wait_for(lambda: _failed_keys(daemon) >= set(_bad_keys()), "every bad episode failed", daemon=daemon)
        wait_for(lambda: _done(root, first_done), "good and accepted episodes done", daemon=daemon)
        rescans_at_failure = points.passes("service:rescan")
        before_fix_digests = {key: _digest(root, key) for key in _bad_keys()}
        before_fix_rows = set(rows_by_key(root))
        for key in _fixed_keys():
            _rewrite(root, key)
        wait_for(lambda: _done(root, _done_episodes()), "fixed episodes retried and done", daemon=daemon)
        # No hot loop: the unfixed failures must stay at one event each over several rescans.
        points.wait_passes("service:rescan", rescans_at_failure + 4, daemon)
    finally:
        exit_code = daemon.stop()
    return Corpus(
        root=root,
        outside=outside,
        outside_files=outside_files,
        written=written,
        before_fix_digests=before_fix_digests,
        before_fix_rows=before_fix_rows,
        final_digests={key: _digest(root, key) for key in _bad_keys()},
        rows=rows_by_key(root),
        events=list(daemon.events),
        exit_code=exit_code,
    )


def _check_failed_once_and_kept(corpus: Corpus, key: Key, kind: BadKind) -> dict[str, Any]:
    failures = corpus.failures(key)
    assert len(failures) == 1, f"{key}: {len(failures)} episode_failed events, expected one: {failures}"
    event = failures[0]
    directory = str(episode_dir(corpus.root, *key))
    assert event["level"] == "error" and event["path"] == directory
    assert event["error_type"] == kind.error_type, event
    assert directory in event["reason"], event["reason"]
    for word in kind.words:
        assert word in event["reason"], f"{word!r} not in {event['reason']!r}"
    assert KEPT in event["action"] and "retries" in event["action"]
    assert corpus.before_fix_digests[key] == corpus.written[key], f"{key}: PNGs changed after the failure"
    assert key not in corpus.before_fix_rows, f"{key}: a failed episode has a metadata row"
    if kind.fixed:
        assert len(corpus.rows.get(key, [])) == 1, f"{key}: not retried and done after the folder was fixed"
        assert corpus.final_digests[key] is None, f"{key}: PNGs left after the retry succeeded"
    else:
        assert key not in corpus.rows and corpus.final_digests[key] == corpus.written[key]
    return event


def _check_kind(corpus: Corpus, name: str) -> dict[str, Any]:
    return _check_failed_once_and_kept(corpus, (CAM, KINDS[name].episode), KINDS[name])


def test_truncated_png_fails_its_episode_and_is_retried_once_the_frame_is_replaced(corpus: Corpus) -> None:
    _check_kind(corpus, "truncated")


def test_png_with_a_flipped_idat_byte_fails_its_crc_check(corpus: Corpus) -> None:
    _check_kind(corpus, "bad_crc")


def test_jpeg_named_png_is_refused_as_a_jpeg_and_retried_once_converted(corpus: Corpus) -> None:
    _check_kind(corpus, "jpeg")


def test_zero_byte_frame_fails_its_episode_as_empty(corpus: Corpus) -> None:
    _check_kind(corpus, "zero_byte")


def test_16_bit_png_is_refused_not_truncated_to_8_bits(corpus: Corpus) -> None:
    _check_kind(corpus, "sixteen_bit")


def test_translucent_rgba_frame_is_refused_naming_the_pixel(corpus: Corpus) -> None:
    _check_kind(corpus, "translucent")


def test_frame_of_another_size_fails_its_episode_naming_both_sizes(corpus: Corpus) -> None:
    _check_kind(corpus, "mixed_sizes")


def test_odd_frame_size_fails_with_yuv420p(corpus: Corpus) -> None:
    _check_kind(corpus, "odd_size")


def test_gap_in_frame_numbers_fails_naming_the_missing_frame_and_is_retried_once_filled(corpus: Corpus) -> None:
    _check_kind(corpus, "gap")


def test_two_files_for_one_frame_number_fail_naming_both(corpus: Corpus) -> None:
    _check_kind(corpus, "duplicate")


def test_non_numeric_frame_name_fails_naming_the_file(corpus: Corpus) -> None:
    _check_kind(corpus, "non_numeric")


def test_marker_without_frames_fails_as_empty_and_is_retried_once_frames_arrive(corpus: Corpus) -> None:
    _check_kind(corpus, "marker_only")


def test_symlinked_frame_out_of_the_root_is_refused_and_its_target_untouched(corpus: Corpus) -> None:
    _check_kind(corpus, "symlinked_frame")
    assert _tree_digest(corpus.outside) == corpus.outside_files


def test_symlinked_episode_folder_out_of_the_root_is_refused_and_its_files_untouched(corpus: Corpus) -> None:
    _check_kind(corpus, "symlinked_folder")
    assert (episode_dir(corpus.root, CAM, KINDS["symlinked_folder"].episode)).is_symlink()
    assert _tree_digest(corpus.outside) == corpus.outside_files


def test_empty_episode_folder_without_marker_is_left_alone(corpus: Corpus) -> None:
    assert episode_dir(corpus.root, *UNMARKED_EMPTY).is_dir()
    assert not corpus.failures(UNMARKED_EMPTY) and UNMARKED_EMPTY not in corpus.rows


def _segment_frames(root: Path, row: dict[str, Any]) -> list[np.ndarray]:
    path = chunk_path(root, row["video_key"], row["chunk_index"], row["file_index"])
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return frames[row["first_frame"] : row["first_frame"] + row["num_frames"]]


def _check_accepted(corpus: Corpus, name: str) -> list[np.ndarray]:
    key = (CAM, ACCEPTED[name][0])
    assert not corpus.failures(key)
    assert key in corpus.before_fix_rows and corpus.final_digests.get(key) is None
    (row,) = corpus.rows[key]
    assert (row["num_frames"], row["video.width"], row["video.height"]) == (NUM_FRAMES, W, H)
    assert (row["video.pix_fmt"], row["video.channels"]) == ("yuv420p", 3)
    frames = _segment_frames(corpus.root, row)
    assert [read_index(f) for f in frames] == [(key[1], i) for i in range(NUM_FRAMES)]
    return frames


def test_grayscale_8_bit_frames_are_converted_and_encoded(corpus: Corpus) -> None:
    frames = _check_accepted(corpus, "grayscale")
    for frame in frames:
        spread = np.abs(frame.astype(np.int16) - frame[..., 1:2].astype(np.int16)).mean()
        assert spread < 3, "grey frames came back coloured"


def test_opaque_rgba_frames_are_encoded_without_their_alpha(corpus: Corpus) -> None:
    frames = _check_accepted(corpus, "rgba_opaque")
    source = scene(W, H, 0)
    for i, frame in enumerate(frames):
        assert psnr_db(frame, render_frame(source, W, H, ACCEPTED["rgba_opaque"][0], i)) > 25


def test_palette_frames_are_converted_and_encoded(corpus: Corpus) -> None:
    _check_accepted(corpus, "palette")


def test_good_episodes_beside_the_bad_ones_are_done_exactly_once(corpus: Corpus) -> None:
    assert {(e.camera, e.index) for e in GOOD} <= corpus.before_fix_rows, "good episodes waited for the bad ones"
    check_invariants(corpus.root, _done_episodes(), {}, final=True)
    good_failures = [
        e
        for e in corpus.events
        if e["event"] == "episode_failed" and (e["camera"], e["episode"]) not in set(_bad_keys())
    ]
    assert good_failures == []


def test_the_daemon_survives_the_corpus_and_leaves_no_journal_or_temp_file(corpus: Corpus) -> None:
    assert corpus.exit_code == 0
    assert not [e for e in corpus.events if e["event"] == "crashed"]
    state = RootState(corpus.root)
    assert state.intents() == [] and list(state.tmp_dir.iterdir()) == []
    unfixed = set(_bad_keys()) - set(_fixed_keys())
    assert {(f.camera, f.episode) for f in state.failures()} == unfixed, "fixed episodes keep a failure record"


def test_unicode_quote_and_newline_camera_keys_are_processed_and_reported_verbatim(corpus: Corpus) -> None:
    for key in ODD_KEYS:
        assert (key, 0) in corpus.rows
        assert chunk_path(corpus.root, key, 0, 0).is_file()
    event = _check_failed_once_and_kept(
        corpus, NEWLINE_BAD, BadKind(1, "CorruptFrameError", ("frame-000004.png", "truncated"), None)
    )
    assert event["camera"] == "cam\nnewline"


# kinds that need their own daemon --------------------------------------------------------------------
def _events_for(daemon: Daemon, name: str, key: Key) -> list[dict[str, Any]]:
    return [e for e in daemon.events_named(name) if (e["camera"], e["episode"]) == key]


def _outcomes(daemon: Daemon, key: Key) -> list[dict[str, Any]]:
    return _events_for(daemon, "episode_failed", key) + _events_for(daemon, "episode_done", key)


def _no_journal_or_temp(root: Path) -> None:
    state = RootState(root)
    assert state.intents() == [], "a journal intent was left behind"
    assert list(state.tmp_dir.iterdir()) == [], "a temp encode was left behind"


def test_folder_deleted_while_its_episode_is_processed_leaves_nothing_half_done(tmp_path: Path) -> None:
    key: Key = (CAM, 0)
    write_episode(episode_dir(tmp_path, *key), 0, 120, 160, 120)
    other = Episode(OTHER, 0, NUM_FRAMES)
    write_episode(episode_dir(tmp_path, OTHER, 0), 0, NUM_FRAMES, W, H, seed=1)
    daemon = start_daemon(tmp_path, ROBOVID_RESCAN_S=str(RESCAN_S))
    try:
        wait_for(lambda: bool(_events_for(daemon, "episode_started", key)), "episode started", daemon=daemon)
        shutil.rmtree(episode_dir(tmp_path, *key), ignore_errors=True)
        wait_for(lambda: bool(_outcomes(daemon, key)), "the deleted episode's outcome", daemon=daemon)
        wait_for(lambda: _done(tmp_path, [other]), "the other camera's episode done", daemon=daemon)
        later = Episode(CAM, 1, NUM_FRAMES)
        write_episode(episode_dir(tmp_path, CAM, 1), 1, NUM_FRAMES, 160, 120)
        wait_for(lambda: _done(tmp_path, [later]), "a later episode of the same camera done", daemon=daemon)
        outcome = _outcomes(daemon, key)
    finally:
        assert daemon.stop() == 0
    assert len(outcome) == 1, outcome
    rows = rows_by_key(tmp_path)
    if outcome[0]["event"] == "episode_failed":
        assert key not in rows
        assert str(episode_dir(tmp_path, *key)) in outcome[0]["reason"]
        done = [other, later]
    else:  # it was encoded before the folder went: then it must be complete in the video
        done = [other, later, Episode(CAM, 0, 120)]
    check_invariants(tmp_path, done, {}, final=True)
    _no_journal_or_temp(tmp_path)


def _png_bytes(img: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _write_slowly(directory: Path, frames: list[bytes], first: int, period_s: float, stop: threading.Event) -> None:
    """A recorder that wrote its marker too early: the rest of the frames, each in two writes."""
    for index in range(first, len(frames)):
        if stop.wait(period_s):
            return
        directory.mkdir(parents=True, exist_ok=True)
        data = frames[index]
        with open(_frame(directory, index), "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            stop.wait(period_s / 4)
            f.write(data[len(data) // 2 :])


@dataclass
class LateFrames:
    """A recorder that wrote its marker first: 40 frames there at pick-up, 20 more written while it works."""

    total: int
    in_video: list[tuple[int, int]]
    """(episode, frame) of each frame in the committed segment."""
    left_on_disk: list[int]
    failures: list[dict[str, Any]]


@pytest.fixture(scope="module")
def late_frames(tmp_path_factory: pytest.TempPathFactory) -> LateFrames:
    root = tmp_path_factory.mktemp("late_frames")
    key: Key = (CAM, 0)
    directory = episode_dir(root, *key)
    width, height, total, first_batch = 160, 120, 60, 40
    source = scene(width, height, 0)
    frames = [_png_bytes(render_frame(source, width, height, 0, i)) for i in range(total)]
    directory.mkdir(parents=True)
    (directory / ".complete").touch()
    for i in range(first_batch):
        _frame(directory, i).write_bytes(frames[i])
    points = PointHooks(tmp_path_factory.mktemp("points"))
    points.hold("encode:frame")  # the late frames come while the daemon encodes the first batch
    daemon = start_daemon(root, ROBOVID_RESCAN_S=str(RESCAN_S), **points.env)
    stop = threading.Event()
    writer = threading.Thread(target=_write_slowly, args=(directory, frames, first_batch, 0.005, stop))
    try:
        wait_for(lambda: bool(_events_for(daemon, "episode_started", key)), "episode picked up", daemon=daemon)
        points.wait_passes("encode:frame", 1, daemon)
        writer.start()
        writer.join()
        points.release("encode:frame")
        wait_for(lambda: key in rows_by_key(root), "a row for the episode", daemon=daemon)
        # Once the row exists the outcome is settled: either all frames are in it, or the rest must be reported.
        wait_for(
            lambda: rows_by_key(root)[key][0]["num_frames"] == total or bool(_outcomes(daemon, key)),
            "the late frames handled",
            daemon=daemon,
        )
    finally:
        stop.set()
        if writer.is_alive():
            writer.join()
        assert daemon.stop() == 0
    (row,) = rows_by_key(root)[key]
    in_video = decoded_indices(chunk_path(root, CAM, row["chunk_index"], row["file_index"]))
    in_video = in_video[row["first_frame"] : row["first_frame"] + row["num_frames"]]
    left = [i for i in range(total) if _frame(directory, i).exists()]
    return LateFrames(total, in_video, left, _events_for(daemon, "episode_failed", key))


def test_frames_written_after_the_marker_are_never_deleted_unencoded(late_frames: LateFrames) -> None:
    lost = [i for i in range(late_frames.total) if (0, i) not in late_frames.in_video]
    lost = [i for i in lost if i not in late_frames.left_on_disk]
    assert lost == [], f"frames {lost} were deleted but are not in the video"
    if len(late_frames.in_video) < late_frames.total:
        assert late_frames.failures, "frames left out of the video are not reported"
        assert late_frames.failures[-1]["path"] in late_frames.failures[-1]["reason"]


def test_frames_written_after_the_marker_all_end_up_in_the_video(late_frames: LateFrames) -> None:
    expected = [(0, i) for i in range(late_frames.total)]
    assert late_frames.in_video == expected, f"the video holds {len(late_frames.in_video)} of {late_frames.total}"


EIGHT_K = (7680, 4320)
MEMORY_MAX_BYTES = 2 * 1024**3
"""``MemoryMax=2G`` in systemd/robovid-watch.service: above it the kernel kills the service."""


def _write_8k_episode(directory: Path, episode: int, num_frames: int) -> None:
    """Cheap 8K frames (gradients plus the index strip): the scene generator would need ~1 GB here."""
    width, height = EIGHT_K
    base = np.empty((height, width, 3), np.uint8)
    base[...] = np.linspace(16, 239, width).astype(np.uint8)[None, :, None]
    base[..., 1] = np.linspace(16, 239, height).astype(np.uint8)[:, None]
    directory.mkdir(parents=True)
    for i in range(num_frames):
        img = base.copy()
        img[..., 2] = (img[..., 2] + 20 * i) % 224 + 16
        burn_index(img, episode, i)
        Image.fromarray(img).save(_frame(directory, i), compress_level=1)
    (directory / ".complete").touch()


class _PeakRss:
    """Samples a process's resident memory on a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_bytes


def test_8k_frames_fail_clearly_by_default_instead_of_running_the_service_out_of_memory(tmp_path: Path) -> None:
    huge = Episode(CAM, 0, 3)
    _write_8k_episode(episode_dir(tmp_path, CAM, 0), 0, huge.num_frames)
    kept = png_digest(tmp_path, huge)
    small = Episode(OTHER, 0, NUM_FRAMES)
    write_episode(episode_dir(tmp_path, OTHER, 0), 0, NUM_FRAMES, W, H, seed=1)
    daemon = start_daemon(tmp_path)
    rss = _PeakRss(daemon.process.pid)
    try:
        wait_for(lambda: _done(tmp_path, [small]), "the small episode done", daemon=daemon)
        wait_for(lambda: bool(daemon.events_named("episode_failed")), "the 8K episode failed", daemon=daemon)
    finally:
        peak = rss.stop()
        assert daemon.stop() == 0
    (failed,) = daemon.events_named("episode_failed")
    assert failed["error_type"] == "FrameSizeError" and "ROBOVID_MAX_FRAME_PIXELS" in failed["reason"]
    assert png_digest(tmp_path, huge) == kept and (CAM, 0) not in rows_by_key(tmp_path)
    assert peak < MEMORY_MAX_BYTES / 2, f"peak RSS {peak / 1024**2:.0f} MiB"


@pytest.mark.slow
def test_8k_frames_are_encoded_exactly_when_allowed(tmp_path: Path) -> None:
    huge = Episode(CAM, 0, 3)
    _write_8k_episode(episode_dir(tmp_path, CAM, 0), 0, huge.num_frames)
    daemon = start_daemon(tmp_path, ROBOVID_MAX_FRAME_PIXELS=str(EIGHT_K[0] * EIGHT_K[1]))
    rss = _PeakRss(daemon.process.pid)
    try:
        wait_for(lambda: _done(tmp_path, [huge]), "8K episode done", daemon=daemon)
    finally:
        peak = rss.stop()
        assert daemon.stop() == 0
    (row,) = rows_by_key(tmp_path)[(CAM, 0)]
    assert (row["video.width"], row["video.height"], row["num_frames"]) == (*EIGHT_K, 3)
    check_invariants(tmp_path, [huge], {}, final=True)
    print(f"8K peak RSS {peak / 1024**2:.0f} MiB")  # ~2.3 GiB measured: documented with ROBOVID_MAX_FRAME_PIXELS


def _mode_000_blocks_reading(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
    except PermissionError:
        return True
    finally:
        probe.unlink()
    return False


@pytest.mark.parametrize(
    ("what", "settle_s"),
    [
        ("frame", "0"),
        ("folder", "0"),
        ("folder", "0.5"),
    ],
)
def test_unreadable_frame_or_folder_fails_its_episode_naming_it(tmp_path: Path, what: str, settle_s: str) -> None:
    prefix = None
    if not _mode_000_blocks_reading(tmp_path):
        if shutil.which("setpriv") is None:
            pytest.skip("running as root (CAP_DAC_OVERRIDE) and no setpriv to drop it: chmod 000 blocks nothing")
        prefix = DROP_FILE_PERMISSION_OVERRIDE  # root, but file modes apply to the service
    marker = ".complete" if settle_s == "0" else None
    key: Key = (CAM, 0)
    bad = Episode(CAM, 0, NUM_FRAMES)
    directory = episode_dir(tmp_path, *key)
    write_episode(directory, 0, NUM_FRAMES, W, H, marker=marker)
    good = [Episode(CAM, 1, NUM_FRAMES), Episode(OTHER, 0, NUM_FRAMES)]
    for seed, episode in enumerate(good):
        write_episode(
            episode_dir(tmp_path, episode.camera, episode.index), episode.index, NUM_FRAMES, W, H, seed, marker
        )
    written = png_digest(tmp_path, bad)
    blocked = _frame(directory, 4) if what == "frame" else directory
    blocked.chmod(0)
    daemon = start_daemon(tmp_path, prefix, ROBOVID_SETTLE_S=settle_s)
    try:
        wait_for(lambda: _done(tmp_path, good), "readable episodes done", daemon=daemon)
        wait_for(lambda: bool(_events_for(daemon, "episode_failed", key)), "episode_failed", timeout=30, daemon=daemon)
    finally:
        daemon.stop()
        blocked.chmod(0o755 if what == "folder" else 0o644)
    (event,) = _events_for(daemon, "episode_failed", key)
    assert event["error_type"] == "UnreadableFrameError" and str(blocked) in event["reason"]
    assert "permission denied" in event["reason"] and KEPT in event["action"]
    assert png_digest(tmp_path, bad) == written and key not in rows_by_key(tmp_path)
    assert daemon.process.returncode == 0


# meta/info.json ------------------------------------------------------------------------------------
BAD_INFO = {
    "not_json": ('{"fps": 30,', "not readable JSON"),
    "fps_word": ('{"fps": "thirty"}', "'fps' is 'thirty'"),
    "fps_zero": ('{"fps": 0}', "'fps' is 0"),
}


def _said(daemon: Daemon, *texts: str) -> bool:
    """Whether one log event (or stderr line) of the daemon holds every text."""
    lines = [json.dumps(e, ensure_ascii=False) for e in list(daemon.events)] + list(daemon.stderr)
    return any(all(text in line for text in texts) for line in lines)


def _write_info(root: Path, text: str) -> Path:
    path = root / "meta" / "info.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(BAD_INFO))
def test_bad_info_json_is_reported_naming_the_file_and_no_png_is_touched(tmp_path: Path, case: str) -> None:
    text, problem = BAD_INFO[case]
    info = _write_info(tmp_path, text)
    episode = Episode(CAM, 0, NUM_FRAMES)
    write_episode(episode_dir(tmp_path, CAM, 0), 0, NUM_FRAMES, W, H)
    written = png_digest(tmp_path, episode)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: _said(daemon, str(info), problem), f"a message naming {info} and {problem!r}")
    finally:
        daemon.stop()
    assert png_digest(tmp_path, episode) == written and rows_by_key(tmp_path) == {}
    assert not (tmp_path / "videos").exists()


def test_daemon_waits_out_a_bad_info_json_and_resumes_once_it_is_fixed(tmp_path: Path) -> None:
    info = _write_info(tmp_path, BAD_INFO["not_json"][0])
    write_episode(episode_dir(tmp_path, CAM, 0), 0, NUM_FRAMES, W, H)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: _said(daemon, str(info)), "a message naming info.json")
        assert daemon.process.poll() is None, "the daemon exited over meta/info.json"
        _write_info(tmp_path, '{"fps": 10}')
        wait_for(lambda: (CAM, 0) in rows_by_key(tmp_path), "episode done once info.json is fixed", daemon=daemon)
    finally:
        daemon.stop()
    assert rows_by_key(tmp_path)[(CAM, 0)][0]["fps"] == 10


def test_info_json_written_after_start_sets_the_fps_of_later_episodes(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, ROBOVID_FPS="30")
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "daemon started", daemon=daemon)
        _write_info(tmp_path, '{"fps": 10}')
        write_episode(episode_dir(tmp_path, CAM, 0), 0, NUM_FRAMES, W, H)
        wait_for(lambda: (CAM, 0) in rows_by_key(tmp_path), "episode done", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    row = rows_by_key(tmp_path)[(CAM, 0)][0]
    assert (row["fps"], row["to_timestamp"] - row["from_timestamp"]) == (10, pytest.approx(NUM_FRAMES / 10))


# files corrupted by someone else -------------------------------------------------------------------
def _top_boxes(data: bytes) -> dict[bytes, tuple[int, int]]:
    """Top-level MP4 boxes: type -> (offset, size) of the last box of that type."""
    boxes, offset = {}, 0
    while offset + 8 <= len(data):
        size, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8]
        boxes[kind] = (offset, size)
        offset += max(size, 8)
    return boxes


def _truncate_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garble_middle(data: bytes) -> bytes:
    """64 bytes in the middle of the file (inside the samples of the earlier episode)."""
    middle = len(data) // 2
    return data[:middle] + b"\xa5" * 64 + data[middle + 64 :]


def _garble_moov_header(data: bytes) -> bytes:
    offset, _ = _top_boxes(data)[b"moov"]
    return data[:offset] + b"\xa5" * 8 + data[offset + 8 :]


def _huge_sample_count(data: bytes) -> bytes:
    """The ``stts`` entry count set to 2**32-1: a table far longer than its box."""
    at = data.index(b"stts") + 8  # after the type: version/flags (4 bytes), then the entry count
    return data[:at] + b"\xff\xff\xff\xff" + data[at + 4 :]


CHUNK_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": _truncate_half,
    "middle_overwritten": _garble_middle,
    "moov_overwritten": _garble_moov_header,
    "sample_count_overwritten": _huge_sample_count,
}


@dataclass
class ChunkRun:
    """One daemon: episode 0 of each camera, its chunk damaged, then episode 1 of each camera."""

    root: Path
    damaged: dict[str, bytes]
    """The damaged chunk file's bytes, per camera (= damage name)."""
    events: list[dict[str, Any]]
    exit_code: int


@pytest.fixture(scope="module")
def chunk_run(tmp_path_factory: pytest.TempPathFactory) -> ChunkRun:
    root = tmp_path_factory.mktemp("chunk_damage")
    cameras = [*CHUNK_DAMAGE, OTHER]
    daemon = start_daemon(root, ROBOVID_RESCAN_S=str(RESCAN_S))
    damaged = {}
    try:
        first = [Episode(camera, 0, NUM_FRAMES) for camera in cameras]
        for seed, episode in enumerate(first):
            write_episode(episode_dir(root, episode.camera, 0), 0, NUM_FRAMES, W, H, seed=seed)
        wait_for(lambda: _done(root, first), "episode 0 of every camera done", daemon=daemon)
        for camera, damage in CHUNK_DAMAGE.items():
            path = chunk_path(root, camera, 0, 0)
            damaged[camera] = damage(path.read_bytes())
            path.write_bytes(damaged[camera])
        for seed, camera in enumerate(cameras):
            write_episode(episode_dir(root, camera, 1), 1, NUM_FRAMES, W, H, seed=seed)
        wait_for(
            lambda: all(_outcomes(daemon, (c, 1)) for c in cameras), "an outcome for each episode 1", daemon=daemon
        )
    finally:
        exit_code = daemon.stop()
    return ChunkRun(root, damaged, list(daemon.events), exit_code)


def _check_new_chunk_after(run: ChunkRun, camera: str) -> None:
    """The damaged file is skipped (logged, untouched), episode 1 starts file-001, and decodes exactly."""
    damaged_path = chunk_path(run.root, camera, 0, 0)
    failed = [e for e in run.events if e["event"] == "episode_failed" and e["camera"] == camera]
    assert failed == [], f"{camera}: episode failed instead of starting a new chunk file: {failed}"
    skipped = [e for e in run.events if e["event"] == "chunk_skipped" and e["chunk"] == str(damaged_path)]
    assert skipped and skipped[0]["level"] == "error", f"no chunk_skipped event for {damaged_path}"
    assert damaged_path.read_bytes() == run.damaged[camera], "the damaged chunk file was modified"
    (row,) = rows_by_key(run.root)[(camera, 1)]
    assert (row["chunk_index"], row["file_index"], row["first_frame"]) == (0, 1, 0)
    assert decoded_indices(chunk_path(run.root, camera, 0, 1)) == [(1, i) for i in range(NUM_FRAMES)]
    assert png_digest(run.root, Episode(camera, 1, NUM_FRAMES)) is None


def test_truncated_chunk_file_is_skipped_and_a_new_one_started(chunk_run: ChunkRun) -> None:
    _check_new_chunk_after(chunk_run, "truncated")


def test_chunk_file_with_a_garbled_moov_is_skipped_and_a_new_one_started(chunk_run: ChunkRun) -> None:
    _check_new_chunk_after(chunk_run, "moov_overwritten")


def test_chunk_file_with_an_impossible_sample_count_is_skipped_and_a_new_one_started(chunk_run: ChunkRun) -> None:
    _check_new_chunk_after(chunk_run, "sample_count_overwritten")


def test_chunk_file_overwritten_in_the_samples_still_takes_new_episodes_that_decode(chunk_run: ChunkRun) -> None:
    """The sample table is intact, so robovid cannot tell; the new episode must still land whole and decode."""
    camera = "middle_overwritten"
    timestamps = [i / 30 for i in range(NUM_FRAMES)]
    frames = decode_episode_frames(chunk_run.root, camera, 1, timestamps, 1e-4, backend="pyav")
    rgb = (np.asarray(frames).transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    assert [read_index(f) for f in rgb] == [(1, i) for i in range(NUM_FRAMES)]
    assert png_digest(chunk_run.root, Episode(camera, 1, NUM_FRAMES)) is None


def test_chunk_damage_leaves_other_cameras_alone_and_the_daemon_running(chunk_run: ChunkRun) -> None:
    assert chunk_run.exit_code == 0 and not [e for e in chunk_run.events if e["event"] == "crashed"]
    check_invariants(chunk_run.root, [Episode(OTHER, i, NUM_FRAMES) for i in range(2)], {}, final=True)


def _corrupt_metadata_part(root: Path) -> Path:
    (part,) = sorted(segments_dir(root).glob("part-*.parquet"))
    data = part.read_bytes()
    middle = len(data) // 2
    part.write_bytes(data[:middle] + b"\xa5" * 256 + data[middle + 256 : -8] + b"\xa5" * 8)
    return part


def _unit_restart_prevent_codes() -> set[int]:
    unit = Path(__file__).parents[1] / "systemd" / "robovid-watch.service"
    lines = [line for line in unit.read_text().splitlines() if line.startswith("RestartPreventExitStatus=")]
    return {int(code) for line in lines for code in line.split("=", 1)[1].split()}


def _root_with_a_committed_episode_then_a_pending_one(root: Path) -> tuple[Path, dict[Path, bytes], str | None]:
    write_episode(episode_dir(root, CAM, 0), 0, NUM_FRAMES, W, H)
    daemon = start_daemon(root)
    try:
        wait_for(lambda: _done(root, [Episode(CAM, 0, NUM_FRAMES)]), "episode 0 done", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    write_episode(episode_dir(root, CAM, 1), 1, NUM_FRAMES, W, H)
    part = _corrupt_metadata_part(root)
    files = {p: p.read_bytes() for p in [part, *chunk_files(root)]}
    return part, files, png_digest(root, Episode(CAM, 1, NUM_FRAMES))


def test_corrupt_metadata_part_stops_the_daemon_at_start_naming_it_and_touching_nothing(tmp_path: Path) -> None:
    part, files, pending = _root_with_a_committed_episode_then_a_pending_one(tmp_path)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: daemon.process.poll() is not None, "the daemon to refuse to start", timeout=60)
    finally:
        code = daemon.stop()
    assert code != 0
    assert _said(daemon, str(part), "unreadable"), "no message names the corrupt metadata file"
    assert {p: p.read_bytes() for p in files} == files, "the metadata part or a chunk file was modified"
    assert png_digest(tmp_path, Episode(CAM, 1, NUM_FRAMES)) == pending


@pytest.mark.parametrize("metrics", [False, True], ids=["", "with-metrics"])
def test_corrupt_metadata_part_exits_with_a_code_systemd_does_not_restart(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, metrics: bool
) -> None:
    _root_with_a_committed_episode_then_a_pending_one(tmp_path)
    env = {"ROBOVID_METRICS_DIR": str(tmp_path_factory.mktemp("metrics"))} if metrics else {}
    daemon = start_daemon(tmp_path, **env)
    try:
        wait_for(lambda: daemon.process.poll() is not None, "the daemon to refuse to start", timeout=60)
    finally:
        code = daemon.stop()
    assert code in _unit_restart_prevent_codes()


def test_metadata_part_damaged_while_running_stops_the_service_with_exit_65_and_every_png_kept(tmp_path: Path) -> None:
    """A worker's commit finds the segment table unreadable: the service stops as it does when the table is
    unreadable at start (exit 65, systemd does not restart it, the message names the part and `robovid verify
    --repair`) instead of failing every later episode as unexpected; restored, a restart commits from the journal."""
    done, pending = Episode(CAM, 0, NUM_FRAMES), [Episode(CAM, 1, NUM_FRAMES), Episode(OTHER, 1, NUM_FRAMES)]
    write_episode(episode_dir(tmp_path, CAM, 0), 0, NUM_FRAMES, W, H)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: _done(tmp_path, [done]), "episode 0 done", daemon=daemon)
        (part,) = sorted(segments_dir(tmp_path).glob("part-*.parquet"))
        backup = part.read_bytes()
        _corrupt_metadata_part(tmp_path)
        for seed, episode in enumerate(pending):
            write_episode(episode_dir(tmp_path, episode.camera, 1), 1, NUM_FRAMES, W, H, seed=seed)
        originals = {episode: png_digest(tmp_path, episode) for episode in pending}
        wait_for(lambda: daemon.process.poll() is not None, "the service to stop on the unreadable part")
    finally:
        code = daemon.stop()
    assert code == 65 and code in _unit_restart_prevent_codes(), daemon.stderr[-20:]
    (event,) = daemon.events_named("metadata_unreadable")
    assert str(part) in event["detail"] and "robovid verify --repair" in event["detail"], event
    assert not daemon.events_named("episode_failed") and RootState(tmp_path, read_only=True).failures() == []
    assert {episode: png_digest(tmp_path, episode) for episode in pending} == originals
    part.write_bytes(backup)  # the operator restores the file
    check_invariants(tmp_path, [done, *pending], originals, final=False)  # each episode committed or untouched
    daemon = start_daemon(tmp_path, ROBOVID_RESCAN_S=str(RESCAN_S))
    try:
        wait_for(lambda: _done(tmp_path, pending), "the pending episodes committed and cleaned", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    check_invariants(tmp_path, [done, *pending], {}, final=True)
