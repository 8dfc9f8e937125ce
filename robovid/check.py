"""Check a whole recording root against its metadata (``robovid verify``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from robovid._movie import read_movie
from robovid.errors import RobovidError
from robovid.layout import chunk_path
from robovid.metadata import read_segments

TOLERANCE_S = 1e-4


def verify_root(root: Path, backend: str = "pyav") -> tuple[list[dict[str, Any]], int]:
    """Problems found (one dict per problem) and the number of segments checked.

    Each segment must be unique, lie inside its chunk file (by frame count), and have
    its first and last frames decode at ``from_timestamp`` and ``to_timestamp - 1/fps``.
    """
    from robovid.decode import decode_video_frames

    rows = read_segments(root).to_pylist()
    problems: list[dict[str, Any]] = []
    counts = Counter((r["video_key"], r["episode_index"]) for r in rows)
    for (key, episode), count in counts.items():
        if count > 1:
            problems.append(_problem(key, episode, f"{count} metadata rows for one episode"))
    frames_in: dict[Path, int] = {}
    for row in rows:
        path = chunk_path(root, row["video_key"], row["chunk_index"], row["file_index"])
        problem = _check_row(row, path, frames_in, decode_video_frames, backend)
        if problem:
            problems.append(_problem(row["video_key"], row["episode_index"], problem))
    return problems, len(rows)


def _problem(key: str, episode: int, text: str) -> dict[str, Any]:
    return {"video_key": key, "episode_index": episode, "problem": text}


def _check_row(row: dict[str, Any], path: Path, frames_in: dict[Path, int], decode: Any, backend: str) -> str | None:
    if not path.is_file():
        return f"chunk file {path} is missing"
    try:
        if path not in frames_in:
            frames_in[path] = read_movie(path).num_frames
        end = row["first_frame"] + row["num_frames"]
        if end > frames_in[path]:
            return f"{path} holds {frames_in[path]} frames, the segment needs frames up to {end}"
        last = row["to_timestamp"] - 1.0 / row["fps"]
        frames = decode(path, [row["from_timestamp"], last], TOLERANCE_S, backend)
        if tuple(frames.shape[:2]) != (2, 3):
            return f"decoded an unexpected shape {tuple(frames.shape)}"
    except (RobovidError, OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None
