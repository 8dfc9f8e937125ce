"""Join whole video files by stream copy (the reference's ``concatenate_video_files``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import structlog

from robovid._movie import check_compatible, check_constant_rate, read_movie, write_movie
from robovid.durable import atomic_output

log = structlog.get_logger(__name__)


def concatenate_video_files(
    input_video_paths: Sequence[Path | str],
    output_video_path: Path | str,
    overwrite: bool = True,
    compatibility_check: bool = False,
) -> None:
    """Concatenate MP4 files (one video track each) into ``output_video_path`` by stream copy.

    ``compatibility_check`` is accepted for LeRobot's signature; robovid checks every input
    whatever its value (joining mismatched streams makes a file that decodes wrong), so
    ``False`` does not skip the check.

    Unlike the reference, no ffconcat list is built (any file name works), every input
    is checked before anything is written (missing file: FileNotFoundError naming it;
    codec, size, pixel format, frame rate or the encoder settings robovid recorded in them
    differing: MismatchedVideosError; frames not all equally long: UnevenFrameTimingError), the
    output is written beside its destination, fsynced and renamed into place, and
    timestamps are rebuilt from the sample tables, so they are monotonic by construction.
    Writes ``sum(input sizes)`` bytes once: use :func:`robovid.append_video` to grow a
    chunk one episode at a time.
    """
    output_video_path = Path(output_video_path)
    if output_video_path.exists() and not overwrite:
        log.warning("video_exists_skipping_concatenation", path=str(output_video_path))
        return
    if len(input_video_paths) == 0:
        raise FileNotFoundError("No input video paths provided: nothing to concatenate.")
    paths = [Path(p) for p in input_video_paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Input video not found: {', '.join(missing)}")
    movies = [read_movie(p) for p in paths]
    check_constant_rate(movies[0])  # check_compatible checks each later one
    for movie in movies[1:]:
        check_compatible(movies[0], movie)
    with atomic_output(output_video_path) as temp, open(temp, "wb") as out:
        write_movie(out, movies)
