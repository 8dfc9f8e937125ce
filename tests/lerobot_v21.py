"""A LeRobot v2.1 archive written the way LeRobot 0.3 lays it out: per-episode MP4s and JSON metadata.

``meta/info.json`` (``codebase_version`` v2.1, ``fps``, ``chunks_size``, ``video_path``, the video
features), ``meta/episodes.jsonl`` (``episode_index``, ``tasks``, ``length``) and
``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4``. Frames carry
their (episode, frame) index (:mod:`robovid.synthetic`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from daemon_harness import decoded_indices

from robovid._movie import read_movie
from robovid.decode import decode_episode_frames
from robovid.layout import chunk_path
from robovid.metadata import read_segments
from robovid.synthetic import read_index, render_frame, scene

FPS = 30
WIDTH, HEIGHT = 64, 48
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
KEYS = ("observation.images.front", "observation.images.wrist")


def write_mp4(
    path: Path,
    episode: int,
    frames: int,
    codec: str = "libsvtav1",
    audio: bool = False,
    rate: int = FPS,
    pts: Sequence[int] | None = None,
) -> Path:
    """An episode MP4 with PyAV (robovid's AV1 settings, or ``libx264``), optionally with a silent audio track.

    Frame ``i`` is shown at ``i / rate`` seconds, or at ``pts[i] / rate`` (a variable frame rate: gaps where a
    camera dropped frames).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    background = scene(WIDTH, HEIGHT, seed=episode)
    options = {"g": "2", "crf": "30"} if codec == "libsvtav1" else {"g": "2", "crf": "23", "bf": "0"}
    with av.open(str(path), "w") as container:
        stream = cast(av.video.stream.VideoStream, container.add_stream(codec, rate=Fraction(rate), options=options))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = Fraction(1, rate)
        sound = cast(av.audio.stream.AudioStream, container.add_stream("aac", rate=48000)) if audio else None
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(render_frame(background, WIDTH, HEIGHT, episode, index), format="rgb24")
            frame.pts, frame.time_base = index if pts is None else pts[index], Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            silence.sample_rate = 48000
            container.mux(sound.encode(silence))
            container.mux(sound.encode(None))
    return path


def write_archive(root: Path, lengths: dict[int, int]) -> Path:
    """Metadata for episodes ``lengths`` (index -> frames); the caller writes each MP4 at :func:`video_path`."""
    features = {
        key: {"dtype": "video", "shape": [HEIGHT, WIDTH, 3], "names": ["height", "width", "channels"]} for key in KEYS
    }
    info = {
        "codebase_version": "v2.1",
        "fps": FPS,
        "chunks_size": 1000,
        "total_episodes": len(lengths),
        "total_frames": sum(lengths.values()),
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": VIDEO_PATH,
        "features": features,
    }
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    lines = [json.dumps({"episode_index": e, "tasks": ["pick"], "length": n}) for e, n in sorted(lengths.items())]
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    return root


def video_path(root: Path, episode: int, key: str) -> Path:
    return root / VIDEO_PATH.format(episode_chunk=episode // 1000, video_key=key, episode_index=episode)


def check_converted(dest: Path, episodes: range, frames_each: int) -> None:
    """Every (camera, episode) once in DEST, its own frames in order, no chunk frame unclaimed, exact timestamps."""
    rows = read_segments(dest).to_pylist()
    keys = sorted((r["video_key"], r["episode_index"]) for r in rows)
    assert keys == sorted((k, e) for k in KEYS for e in episodes), keys
    claimed: dict[Path, set[int]] = {}
    for row in rows:
        path = chunk_path(dest, row["video_key"], row["chunk_index"], row["file_index"])
        frames = decoded_indices(path)[row["first_frame"] : row["first_frame"] + row["num_frames"]]
        assert frames == [(row["episode_index"], i) for i in range(frames_each)], row
        span = set(range(row["first_frame"], row["first_frame"] + row["num_frames"]))
        assert not claimed.setdefault(path, set()) & span
        claimed[path] |= span
    for path, frames in claimed.items():
        assert frames == set(range(read_movie(path).num_frames)), f"{path}: frames no row accounts for"
    for key, episode in keys:  # exact offsets: the rows' timestamps find each episode's own first and last frame
        decoded = decode_episode_frames(dest, key, episode, [0.0, (frames_each - 1) / FPS], 1e-4, "pyav")
        images = np.rint(np.asarray(decoded).transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        assert [read_index(image) for image in images] == [(episode, 0), (episode, frames_each - 1)], (key, episode)
