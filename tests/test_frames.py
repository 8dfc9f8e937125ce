"""robovid.frames: listing episode folders, reading PNG headers and decoding frames to RGB.

Every file here is real: PNGs written by Pillow (or byte by byte where Pillow cannot write the
format), damaged by really truncating them or flipping their bytes.
"""

from __future__ import annotations

import os
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robovid.errors import (
    CorruptFrameError,
    EmptyEpisodeError,
    FrameFormatError,
    FrameSequenceError,
    FrameSizeError,
    UnreadableFrameError,
    UnsafePathError,
)
from robovid.frames import FRAME_PATTERN, check_same_size, frame_size, list_episode_frames, read_frame_rgb

W, H = 64, 48
RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
AS_ROOT_REASON = "runs as root, and chmod 000 does not stop root from reading"


def rgb_image(seed: int = 0, w: int = W, h: int = H) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def frame_name(index: int) -> str:
    return f"frame-{index:06d}.png"


def touch_frames(episode: Path, indices: list[int]) -> None:
    """Create empty frame files: enough for listing, which never opens them."""
    episode.mkdir(parents=True, exist_ok=True)
    for i in indices:
        (episode / frame_name(i)).touch()


def save(image: Image.Image | np.ndarray, path: Path, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    pil.save(path, format="PNG", compress_level=1, **options)
    return path


def raw_png(path: Path, w: int, h: int, color_type: int, depth: int, rows: bytes) -> Path:
    """Write a PNG byte by byte (for formats Pillow cannot write); rows include filter bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def chunk_offset(data: bytes | bytearray, kind: bytes) -> tuple[int, int]:
    """(offset, length) of the first chunk of type ``kind``."""
    pos = 8
    while True:
        length, found = struct.unpack_from(">I4s", data, pos)
        if found == kind:
            return pos, length
        pos += 12 + length


def assert_corrupt(path: Path, *words: str) -> CorruptFrameError:
    with pytest.raises(CorruptFrameError) as excinfo:
        read_frame_rgb(path)
    message = str(excinfo.value)
    assert str(path) in message
    for word in words:
        assert word in message
    return excinfo.value


def assert_partial_write_advice(error: Exception) -> None:
    message = str(error)
    assert "partially" in message
    assert "Re-record" in message


# ---------------------------------------------------------------- FRAME_PATTERN


def test_frame_pattern_takes_six_or_more_ascii_digits() -> None:
    six, seven = FRAME_PATTERN.fullmatch("frame-000001.png"), FRAME_PATTERN.fullmatch("frame-1234567.png")
    assert six is not None and six[1] == "000001"
    assert seven is not None and seven[1] == "1234567"
    assert FRAME_PATTERN.fullmatch("frame-00001.png") is None
    assert FRAME_PATTERN.fullmatch("frame-٠٠٠٠٠١.png") is None  # Arabic-Indic digits
    assert FRAME_PATTERN.fullmatch("frame-000001.png.tmp") is None


# ---------------------------------------------------------------- list_episode_frames


def test_frames_are_listed_in_index_order(tmp_path: Path) -> None:
    touch_frames(tmp_path, [11, 2, 0, 10, 1, 3, 4, 5, 6, 7, 8, 9])
    frames = list_episode_frames(tmp_path)
    assert frames == [tmp_path / frame_name(i) for i in range(12)]


def test_seven_digit_names_sort_by_number_not_by_text(tmp_path: Path) -> None:
    touch_frames(tmp_path, list(range(10)))
    (tmp_path / "frame-0000010.png").touch()  # sorts before frame-000001.png as text
    frames = list_episode_frames(tmp_path)
    assert [p.name for p in frames] == [frame_name(i) for i in range(10)] + ["frame-0000010.png"]


def test_empty_folder_raises_empty_episode_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(EmptyEpisodeError, match="wrote no frames") as excinfo:
        list_episode_frames(tmp_path)
    assert str(tmp_path) in str(excinfo.value)


def test_folder_with_only_hidden_and_non_png_files_is_empty(tmp_path: Path) -> None:
    for name in [".complete", "meta.json", "frame-000000.png.tmp"]:
        (tmp_path / name).touch()
    with pytest.raises(EmptyEpisodeError):
        list_episode_frames(tmp_path)


def test_missing_folder_raises_empty_episode_error(tmp_path: Path) -> None:
    with pytest.raises(EmptyEpisodeError, match="does not exist"):
        list_episode_frames(tmp_path / "episode-000007")


def test_hidden_marker_and_temp_files_are_ignored(tmp_path: Path) -> None:
    touch_frames(tmp_path, [0, 1, 2])
    for name in [".complete", ".frame-000003.png.swp", ".frame-000003.png", "frame-000003.png~", "x.txt"]:
        (tmp_path / name).touch()
    assert [p.name for p in list_episode_frames(tmp_path)] == [frame_name(i) for i in range(3)]


def test_gap_names_first_missing_index_and_count(tmp_path: Path) -> None:
    touch_frames(tmp_path, [0, 1, 2, 5, 7])
    with pytest.raises(FrameSequenceError) as excinfo:
        list_episode_frames(tmp_path)
    message = str(excinfo.value)
    assert "missing frame 3 (frame-000003.png)" in message
    assert "3 of the indices 0..7 are missing" in message
    assert str(tmp_path) in message


def test_missing_frame_zero_is_a_gap(tmp_path: Path) -> None:
    touch_frames(tmp_path, [1, 2, 3])
    with pytest.raises(FrameSequenceError, match=r"missing frame 0 \(frame-000000.png\)"):
        list_episode_frames(tmp_path)


def test_duplicate_index_with_other_padding_is_rejected(tmp_path: Path) -> None:
    touch_frames(tmp_path, [0, 1, 2])
    (tmp_path / "frame-0000001.png").touch()
    with pytest.raises(FrameSequenceError, match="frame 1 twice") as excinfo:
        list_episode_frames(tmp_path)
    assert "frame-000001.png" in str(excinfo.value)
    assert "frame-0000001.png" in str(excinfo.value)


def test_non_numeric_frame_name_is_rejected_by_name(tmp_path: Path) -> None:
    touch_frames(tmp_path, [0, 1])
    (tmp_path / "frame-abc.png").touch()
    with pytest.raises(FrameSequenceError, match=re.escape("'frame-abc.png'")):
        list_episode_frames(tmp_path)


def test_other_png_names_are_rejected_by_name(tmp_path: Path) -> None:
    touch_frames(tmp_path, [0, 1])
    (tmp_path / "img-000001.png").touch()
    (tmp_path / "FRAME-000002.PNG").touch()
    with pytest.raises(FrameSequenceError) as excinfo:
        list_episode_frames(tmp_path)
    assert "2 PNG file(s)" in str(excinfo.value)
    assert "'FRAME-000002.PNG', 'img-000001.png'" in str(excinfo.value)


def test_folder_named_like_a_frame_is_rejected(tmp_path: Path) -> None:
    touch_frames(tmp_path, [0])
    (tmp_path / frame_name(1)).mkdir()
    with pytest.raises(FrameSequenceError, match="is not a file"):
        list_episode_frames(tmp_path)


def test_broken_symlink_frame_is_rejected(tmp_path: Path) -> None:
    touch_frames(tmp_path, [0])
    (tmp_path / frame_name(1)).symlink_to(tmp_path / "gone.png")
    with pytest.raises(FrameSequenceError, match="missing or not a file"):
        list_episode_frames(tmp_path)


def test_symlinked_frame_outside_root_is_rejected(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    episode = root / "images" / "cam" / "episode-000000"
    touch_frames(episode, [0])
    touch_frames(outside, [1])
    (episode / frame_name(1)).symlink_to(outside / frame_name(1))
    with pytest.raises(UnsafePathError, match="outside the recording root") as excinfo:
        list_episode_frames(episode, root=root)
    assert str(episode / frame_name(1)) in str(excinfo.value)


def test_symlinked_frame_inside_root_is_accepted(tmp_path: Path) -> None:
    root = tmp_path / "root"
    episode = root / "images" / "cam" / "episode-000000"
    save(rgb_image(1), episode / frame_name(0))
    shared = save(rgb_image(2), root / "shared" / "frame.png")
    (episode / frame_name(1)).symlink_to(shared)
    frames = list_episode_frames(episode, root=root)
    assert frames == [episode / frame_name(0), episode / frame_name(1)]
    np.testing.assert_array_equal(read_frame_rgb(frames[1]), rgb_image(2))


def test_symlinked_episode_folder_outside_root_is_rejected(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    touch_frames(outside, [0, 1])
    (root / "images" / "cam").mkdir(parents=True)
    episode = root / "images" / "cam" / "episode-000000"
    episode.symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="Episode folder"):
        list_episode_frames(episode, root=root)


def test_root_reached_through_a_symlink_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "data", target_is_directory=True)
    touch_frames(link / "episode-000000", [0, 1])
    assert len(list_episode_frames(tmp_path / "data" / "episode-000000", root=link)) == 2


def test_unicode_space_and_quotes_in_folder_names_work(tmp_path: Path) -> None:
    root = tmp_path / "recordings 'été' \"ß\" 日本"
    episode = root / "images" / "wrist cam 'ü'" / "episode-000000"
    for i in range(3):
        save(rgb_image(i), episode / frame_name(i))
    frames = list_episode_frames(episode, root=root)
    assert check_same_size(frames) == (W, H)
    np.testing.assert_array_equal(read_frame_rgb(frames[2]), rgb_image(2))


def test_listing_10000_frames_takes_well_under_a_second(tmp_path: Path) -> None:
    """Of CPU: one directory listing, no stat per frame (wall time would measure the machine's load)."""
    touch_frames(tmp_path, list(range(10_000)))
    start = time.thread_time()
    frames = list_episode_frames(tmp_path, root=tmp_path)
    elapsed_s = time.thread_time() - start
    assert len(frames) == 10_000
    assert frames[-1].name == "frame-009999.png"
    assert elapsed_s < 1.0


@pytest.mark.skipif(RUNNING_AS_ROOT, reason=AS_ROOT_REASON)
def test_unlistable_folder_raises_unreadable_frame_error(tmp_path: Path) -> None:
    touch_frames(tmp_path / "ep", [0])
    (tmp_path / "ep").chmod(0)
    try:
        with pytest.raises(UnreadableFrameError, match="permission denied"):
            list_episode_frames(tmp_path / "ep")
    finally:
        (tmp_path / "ep").chmod(0o755)


# ---------------------------------------------------------------- read_frame_rgb: pixel formats


def test_rgb8_is_returned_exactly_as_contiguous_uint8(tmp_path: Path) -> None:
    expected = rgb_image()
    frame = read_frame_rgb(save(expected, tmp_path / "f.png"))
    assert frame.dtype == np.uint8
    assert frame.shape == (H, W, 3)
    assert frame.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(frame, expected)


def test_gray8_is_converted_to_rgb(tmp_path: Path) -> None:
    gray = rgb_image()[..., 0]
    frame = read_frame_rgb(save(gray, tmp_path / "f.png"))
    np.testing.assert_array_equal(frame, np.repeat(gray[..., None], 3, axis=2))


def test_one_bit_gray_is_converted_to_rgb(tmp_path: Path) -> None:
    mask = rgb_image()[..., 0] > 127
    frame = read_frame_rgb(save(Image.fromarray(mask), tmp_path / "f.png"))
    np.testing.assert_array_equal(frame, np.repeat(mask[..., None], 3, axis=2).astype(np.uint8) * 255)


def test_gray_alpha_fully_opaque_is_converted_to_rgb(tmp_path: Path) -> None:
    gray = rgb_image()[..., 0]
    frame = read_frame_rgb(save(Image.fromarray(gray).convert("LA"), tmp_path / "f.png"))
    assert frame.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(frame, np.repeat(gray[..., None], 3, axis=2))


def test_gray_alpha_translucent_is_refused(tmp_path: Path) -> None:
    gray = Image.fromarray(rgb_image()[..., 0])
    alpha = np.full((H, W), 255, np.uint8)
    alpha[5, 7] = 0
    path = save(Image.merge("LA", (gray, Image.fromarray(alpha))), tmp_path / "f.png")
    with pytest.raises(FrameFormatError, match="x=7, y=5"):
        read_frame_rgb(path)


def palette_image(indices: np.ndarray, palette: np.ndarray) -> Image.Image:
    image = Image.frombytes("P", (indices.shape[1], indices.shape[0]), indices.tobytes())
    image.putpalette(palette.tobytes())
    return image


def test_palette_is_converted_to_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    indices = rng.integers(0, 16, (H, W), dtype=np.uint8)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    frame = read_frame_rgb(save(palette_image(indices, palette), tmp_path / "f.png"))
    np.testing.assert_array_equal(frame, palette[indices])


def test_palette_with_a_transparent_entry_in_use_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    indices = rng.integers(0, 16, (H, W), dtype=np.uint8)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    path = save(palette_image(indices, palette), tmp_path / "f.png", transparency=int(indices[0, 0]))
    with pytest.raises(FrameFormatError, match="translucent"):
        read_frame_rgb(path)


def test_rgb_colour_key_transparency_in_use_is_refused(tmp_path: Path) -> None:
    image = rgb_image()
    key = tuple(int(v) for v in image[4, 2])
    with pytest.raises(FrameFormatError, match="x=2, y=4"):
        read_frame_rgb(save(image, tmp_path / "f.png", transparency=key))


def test_colour_key_matching_no_pixel_is_accepted(tmp_path: Path) -> None:
    image = rgb_image() & 0xFE  # only even values, so the odd key matches no pixel
    frame = read_frame_rgb(save(image, tmp_path / "f.png", transparency=(1, 1, 1)))
    np.testing.assert_array_equal(frame, image)


def test_rgba_fully_opaque_drops_alpha(tmp_path: Path) -> None:
    expected = rgb_image()
    rgba = np.dstack([expected, np.full((H, W), 255, np.uint8)])
    frame = read_frame_rgb(save(rgba, tmp_path / "f.png"))
    assert frame.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(frame, expected)


def test_rgba_translucent_is_refused_naming_file_and_pixel(tmp_path: Path) -> None:
    rgba = np.dstack([rgb_image(), np.full((H, W), 255, np.uint8)])
    rgba[10, 20, 3] = 128
    path = save(rgba, tmp_path / "f.png")
    with pytest.raises(FrameFormatError, match="alpha 128 at x=20, y=10") as excinfo:
        read_frame_rgb(path)
    assert str(path) in str(excinfo.value)


def test_rgb16_is_refused_as_a_possible_depth_map(tmp_path: Path) -> None:
    samples = np.random.default_rng(4).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)
    path = raw_png(tmp_path / "f.png", W, H, color_type=2, depth=16, rows=rows)
    with pytest.raises(FrameFormatError, match=r"16-bit PNG \(depth map\?\) is not supported") as excinfo:
        read_frame_rgb(path)
    assert str(path) in str(excinfo.value)


def test_gray16_is_refused_as_a_possible_depth_map(tmp_path: Path) -> None:
    depth = np.random.default_rng(5).integers(0, 65536, (H, W), dtype=np.uint16)
    path = save(Image.fromarray(depth), tmp_path / "f.png")
    with pytest.raises(FrameFormatError, match="drop 8 bits per sample"):
        read_frame_rgb(path)


def test_two_and_four_bit_gray_are_scaled_to_8_bit_rgb(tmp_path: Path) -> None:
    for depth in (2, 4):
        levels = rgb_image()[..., 0] >> (8 - depth)
        per_byte = 8 // depth
        packed = levels.reshape(H, W // per_byte, per_byte)
        weights = np.array([depth * (per_byte - 1 - i) for i in range(per_byte)])
        rows = b"".join(b"\0" + (row << weights).sum(axis=1).astype(np.uint8).tobytes() for row in packed)
        path = raw_png(tmp_path / f"gray{depth}.png", W, H, color_type=0, depth=depth, rows=rows)
        expected = (levels.astype(np.uint16) * 255 // (2**depth - 1)).astype(np.uint8)
        np.testing.assert_array_equal(read_frame_rgb(path), np.repeat(expected[..., None], 3, axis=2))


def test_rgb8_is_decoded_into_the_given_array(tmp_path: Path) -> None:
    expected = rgb_image()
    out = np.zeros((H, W, 3), np.uint8)
    frame = read_frame_rgb(save(expected, tmp_path / "f.png"), out=out)
    assert frame is out
    np.testing.assert_array_equal(out, expected)


def test_gray8_is_converted_into_the_given_array(tmp_path: Path) -> None:
    gray = rgb_image()[..., 0]
    out = np.zeros((H, W, 3), np.uint8)
    assert read_frame_rgb(save(gray, tmp_path / "f.png"), out=out) is out
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


def test_a_frame_of_another_size_than_the_given_array_is_refused_naming_both(tmp_path: Path) -> None:
    path = save(rgb_image(), tmp_path / "f.png")
    with pytest.raises(FrameSizeError, match=f"{W}x{H}.*{W}x{H + 2}") as excinfo:
        read_frame_rgb(path, out=np.zeros((H + 2, W, 3), np.uint8))
    assert str(path) in str(excinfo.value)


# ---------------------------------------------------------------- read_frame_rgb: damaged files


def test_truncated_png_is_corrupt(tmp_path: Path) -> None:
    path = save(rgb_image(), tmp_path / "f.png")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_partial_write_advice(assert_corrupt(path, "truncated", "IDAT"))


def test_png_cut_just_before_iend_is_corrupt(tmp_path: Path) -> None:
    path = save(rgb_image(), tmp_path / "f.png")
    data = path.read_bytes()
    path.write_bytes(data[: chunk_offset(data, b"IEND")[0]])
    assert_corrupt(path, "truncated", "IEND")


def test_flipped_idat_byte_fails_the_crc_check(tmp_path: Path) -> None:
    path = save(rgb_image(), tmp_path / "f.png")
    data = bytearray(path.read_bytes())
    offset, length = chunk_offset(data, b"IDAT")
    data[offset + 8 + length // 2] ^= 0xFF
    path.write_bytes(data)
    assert_partial_write_advice(assert_corrupt(path, "IDAT", "CRC"))


def test_damaged_image_data_under_recomputed_crcs_fails_its_checksum(tmp_path: Path) -> None:
    """A writer that damaged the deflate stream and then computed the CRC over it: the zlib Adler-32 catches it."""
    path = save(rgb_image(), tmp_path / "f.png")
    data = bytearray(path.read_bytes())
    offset, length = chunk_offset(data, b"IDAT")
    data[offset + 8 + length // 2] ^= 0xFF
    data[offset + 8 + length : offset + 12 + length] = struct.pack(
        ">I", zlib.crc32(data[offset + 4 : offset + 8 + length])
    )
    path.write_bytes(data)
    assert_corrupt(path, "cannot be decoded")


def test_jpeg_renamed_png_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    Image.fromarray(rgb_image()).save(path, format="JPEG")
    assert_corrupt(path, "JPEG")


def test_zero_byte_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    path.touch()
    assert_partial_write_advice(assert_corrupt(path, "empty (0 bytes)"))


def test_text_file_named_png_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    path.write_text("not an image\n")
    assert_corrupt(path, "not a PNG file")


def test_file_cut_inside_the_signature_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    path.write_bytes(b"\x89PNG")
    assert_corrupt(path, "truncated")


def test_too_short_image_data_with_valid_crcs_is_corrupt(tmp_path: Path) -> None:
    rows = b"".join(b"\0" + row.tobytes() for row in rgb_image()[: H // 2])
    path = raw_png(tmp_path / "f.png", W, H, color_type=2, depth=8, rows=rows)
    assert_corrupt(path, "cannot be decoded")


def test_vanished_frame_raises_frame_sequence_error(tmp_path: Path) -> None:
    with pytest.raises(FrameSequenceError, match="disappeared"):
        read_frame_rgb(tmp_path / frame_name(0))


@pytest.mark.skipif(RUNNING_AS_ROOT, reason=AS_ROOT_REASON)
def test_unreadable_frame_raises_unreadable_frame_error(tmp_path: Path) -> None:
    path = save(rgb_image(), tmp_path / "f.png")
    path.chmod(0)
    with pytest.raises(UnreadableFrameError, match="permission denied"):
        read_frame_rgb(path)
    with pytest.raises(PermissionError):
        frame_size(path)


# ---------------------------------------------------------------- frame_size, check_same_size


def test_frame_size_is_width_then_height(tmp_path: Path) -> None:
    assert frame_size(save(rgb_image(w=40, h=30), tmp_path / "f.png")) == (40, 30)


def test_frame_size_reads_only_the_header(tmp_path: Path) -> None:
    path = save(rgb_image(w=40, h=30), tmp_path / "f.png")
    path.write_bytes(path.read_bytes()[:33])
    assert frame_size(path) == (40, 30)


def test_frame_size_of_a_jpeg_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    Image.fromarray(rgb_image()).save(path, format="JPEG")
    with pytest.raises(CorruptFrameError, match="JPEG"):
        frame_size(path)


def test_frame_size_of_an_empty_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    path.touch()
    with pytest.raises(CorruptFrameError, match="empty"):
        frame_size(path)


def test_frame_size_with_a_damaged_header_is_corrupt(tmp_path: Path) -> None:
    path = save(rgb_image(), tmp_path / "f.png")
    data = bytearray(path.read_bytes())
    data[18] ^= 0x01  # a byte of the width
    path.write_bytes(data)
    with pytest.raises(CorruptFrameError, match="IHDR chunk at byte 8 fails its CRC"):
        frame_size(path)


def test_check_same_size_returns_the_common_size(tmp_path: Path) -> None:
    frames = [save(rgb_image(i), tmp_path / frame_name(i)) for i in range(3)]
    assert check_same_size(frames) == (W, H)


def test_check_same_size_names_first_differing_frame_and_both_sizes(tmp_path: Path) -> None:
    sizes = [(W, H), (W, H), (H, W), (32, 32)]
    frames = [save(rgb_image(i, w, h), tmp_path / frame_name(i)) for i, (w, h) in enumerate(sizes)]
    with pytest.raises(FrameSizeError) as excinfo:
        check_same_size(frames)
    message = str(excinfo.value)
    assert f"{frames[2]} is {H}x{W}" in message
    assert f"{frames[0]} is {W}x{H}" in message
    assert str(frames[3]) not in message


def test_check_same_size_of_no_frames_is_an_empty_episode() -> None:
    with pytest.raises(EmptyEpisodeError):
        check_same_size([])
