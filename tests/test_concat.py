"""robovid.concat: whole files joined by stream copy, atomically, with any file name."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from conftest import EpisodeVideo
from structlog.testing import capture_logs
from videocheck import (
    ffprobe_frame_count,
    pyav_indices,
    pyav_packet_dts,
    sha256,
    temp_leftovers,
    torchcodec_indices_at,
)

from robovid.append import append_video
from robovid.concat import concatenate_video_files
from robovid.errors import MismatchedVideosError

FRAMES = 6
ODD_NAME = "ép 'один' \"x\".mp4"


def expected_indices(sources: list[int]) -> list[tuple[int, int]]:
    return [(source, frame) for source in sources for frame in range(FRAMES)]


def assert_decodes_in_order(video: Path, sources: list[int]) -> None:
    expected = expected_indices(sources)
    assert pyav_indices(video) == expected
    assert ffprobe_frame_count(video) == len(expected)
    header_frames, found = torchcodec_indices_at(video, list(range(len(expected))))
    assert header_frames == len(expected)
    assert found == expected


@pytest.mark.parametrize("path_type", [str, Path])
def test_concatenation_accepts_str_and_path_and_keeps_frame_order(
    tmp_path: Path, episode_video: EpisodeVideo, path_type: type
) -> None:
    sources = [0, 1, 2]
    output = tmp_path / "out" / "joined.mp4"

    concatenate_video_files([path_type(episode_video(s)) for s in sources], path_type(output))

    assert_decodes_in_order(output, sources)
    assert temp_leftovers(output.parent) == []


def test_concatenated_packets_have_strictly_increasing_timestamps(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    output = tmp_path / "joined.mp4"
    concatenate_video_files([episode_video(s) for s in (0, 1, 0, 2)], output)

    dts = pyav_packet_dts(output)

    assert len(dts) == 4 * FRAMES
    assert all(a < b for a, b in itertools.pairwise(dts)), dts


def test_concatenation_works_with_spaces_quotes_and_unicode_in_paths(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    folder = tmp_path / "dir with spaces 'and' \"quotes\" ü"
    inputs = []
    for source in (0, 1):
        odd = folder / f"{source} {ODD_NAME}"
        odd.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(episode_video(source), odd)
        inputs.append(odd)
    output = folder / ODD_NAME

    concatenate_video_files(inputs, output)

    assert_decodes_in_order(output, [0, 1])
    assert temp_leftovers(folder) == []


def test_chunks_grown_by_append_concatenate_too(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for chunk, sources in ((first, [0, 1]), (second, [2, 0])):
        for source in sources:
            append_video(chunk, episode_video(source))
    output = tmp_path / "joined.mp4"

    concatenate_video_files([first, second], output)

    assert_decodes_in_order(output, [0, 1, 2, 0])


def test_a_missing_input_is_named_and_nothing_is_written(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    missing = tmp_path / "episode 'gone'.mp4"
    output = tmp_path / "out" / "joined.mp4"
    output.parent.mkdir()

    with pytest.raises(FileNotFoundError) as error:
        concatenate_video_files([episode_video(0), missing, episode_video(1)], output)

    assert str(missing) in str(error.value)
    assert not output.exists()
    assert temp_leftovers(output.parent) == []
    assert temp_leftovers(tmp_path) == []


MISMATCHES = {
    "size": {"width": 96, "height": 64},
    "codec": {"vcodec": "h264"},
    "fps": {"fps": 15},
    "pix_fmt": {"vcodec": "h264", "pix_fmt": "yuv444p"},
}


@pytest.mark.parametrize("compatibility_check", [False, True], ids=["check-off", "check-on"])
@pytest.mark.parametrize("differs_in", list(MISMATCHES))
def test_mismatched_inputs_are_rejected_before_anything_is_written(
    tmp_path: Path, episode_video: EpisodeVideo, differs_in: str, compatibility_check: bool
) -> None:
    """Whatever ``compatibility_check`` says (LeRobot skips its check by default): a mismatched join decodes wrong."""
    options = MISMATCHES[differs_in]
    base = {"vcodec": options["vcodec"]} if differs_in == "pix_fmt" else {}
    inputs = [episode_video(0, **base), episode_video(1, **base), episode_video(2, **options)]
    output = tmp_path / "joined.mp4"

    with pytest.raises(MismatchedVideosError) as error:
        concatenate_video_files(inputs, output, compatibility_check=compatibility_check)

    assert str(inputs[2]) in str(error.value)
    assert not output.exists()
    assert temp_leftovers(tmp_path) == []


def test_a_rejected_concatenation_leaves_an_existing_output_untouched(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    output = tmp_path / "joined.mp4"
    concatenate_video_files([episode_video(0)], output)
    digest = sha256(output)

    with pytest.raises(MismatchedVideosError):
        concatenate_video_files([episode_video(1), episode_video(2, vcodec="h264")], output, overwrite=True)

    assert sha256(output) == digest
    assert temp_leftovers(tmp_path) == []


def test_overwrite_false_keeps_an_existing_output(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    output = tmp_path / "joined.mp4"
    concatenate_video_files([episode_video(0)], output)
    digest = sha256(output)

    with capture_logs() as logs:
        concatenate_video_files([episode_video(1), episode_video(2)], output, overwrite=False)

    assert sha256(output) == digest
    assert [entry["event"] for entry in logs] == ["video_exists_skipping_concatenation"]
    concatenate_video_files([episode_video(1), episode_video(2)], output, overwrite=True)
    assert_decodes_in_order(output, [1, 2])


@pytest.mark.parametrize("inputs", [[], ()])
def test_an_empty_input_list_raises(tmp_path: Path, inputs: list[Path]) -> None:
    output = tmp_path / "joined.mp4"
    with pytest.raises(FileNotFoundError, match="No input video"):
        concatenate_video_files(inputs, output)
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []
