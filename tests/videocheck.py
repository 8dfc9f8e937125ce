"""Readers that tests use to check a video file: PyAV, the ffprobe CLI and torchcodec, called directly.

Each decoded frame is identified by the ``(episode, frame)`` index burnt into it
(:func:`robovid.synthetic.read_index`), so a reader that returns a neighbouring
frame fails loudly instead of passing a PSNR threshold.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from robovid.durable import TEMP_MARK
from robovid.synthetic import read_index

FAIL_WITHOUT_TORCHCODEC = "ROBOVID_REQUIRE_SYSTEM_TOOLS"
"""Set (to anything but empty) in CI: a missing torchcodec then fails instead of skipping."""

FFPROBE_TIMEOUT_S = 60


def require_torchcodec() -> Any:
    """The torchcodec.decoders module; skip locally when it cannot load, fail in CI."""
    try:
        import torchcodec.decoders
    except Exception as error:  # torchcodec raises RuntimeError/OSError when FFmpeg libs are absent
        if os.environ.get(FAIL_WITHOUT_TORCHCODEC):
            raise
        pytest.skip(f"torchcodec cannot load here ({error}); set {FAIL_WITHOUT_TORCHCODEC}=1 to fail instead")
    return torchcodec.decoders


def pyav_indices(path: Path) -> list[tuple[int, int]]:
    """The (episode, frame) index of every frame of the file, by a full PyAV decode."""
    with av.open(str(path)) as container:
        return [read_index(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def pyav_seek_indices(video: Path, frame_numbers: list[int]) -> list[tuple[int, int]]:
    """Seek to each frame's pts (backward to a keyframe), decode forward to the frame with exactly that pts."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        pts = [frame.pts for frame in container.decode(stream)]
        found = []
        for number in frame_numbers:
            container.seek(pts[number], backward=True, any_frame=False, stream=stream)
            frame = next(f for f in container.decode(stream) if f.pts >= pts[number])
            assert frame.pts == pts[number], f"seeking to frame {number} skipped past it"
            found.append(read_index(frame.to_ndarray(format="rgb24")))
        return found


def pyav_frames(path: Path) -> list[np.ndarray]:
    """Every frame of the file as RGB uint8 (H, W, 3), by a full PyAV decode."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def pyav_packet_dts(path: Path) -> list[int]:
    """DTS of every video packet, in demux order (flush packets left out)."""
    with av.open(str(path)) as container:
        return [p.dts for p in container.demux(video=0) if p.size and p.dts is not None]


def ffprobe_frame_count(path: Path) -> int:
    """Frames that ``ffprobe -count_frames`` decodes; fails the test on any ffprobe error."""
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=FFPROBE_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"ffprobe failed on {path}: {result.stderr}"
    assert result.stderr == "", f"ffprobe reported errors on {path}: {result.stderr}"
    return int(result.stdout.strip())


def index_of_chw(frame: Any) -> tuple[int, int]:
    """Identify a torchcodec frame: uint8 (C, H, W), or float (C, H, W) in [0, 1] as robovid returns."""
    array = frame.numpy() if hasattr(frame, "numpy") else np.asarray(frame)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    return read_index(np.ascontiguousarray(array.transpose(1, 2, 0)))


def torchcodec_indices_at(path: Path, indices: list[int]) -> tuple[int, list[tuple[int, int]]]:
    """Header frame count and the identified frames at ``indices``, torchcodec approximate mode."""
    decoders = require_torchcodec()
    decoder = decoders.VideoDecoder(str(path), seek_mode="approximate")
    batch = decoder.get_frames_at(indices)
    return int(decoder.metadata.num_frames), [index_of_chw(f) for f in batch.data]


def torchcodec_indices_played_at(path: Path, seconds: list[float]) -> list[tuple[int, int]]:
    """The identified frames displayed at ``seconds``, torchcodec approximate mode."""
    decoders = require_torchcodec()
    decoder = decoders.VideoDecoder(str(path), seek_mode="approximate")
    return [index_of_chw(f) for f in decoder.get_frames_played_at(seconds).data]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temp_leftovers(directory: Path) -> list[str]:
    """Names of robovid temp files in ``directory`` (there should be none after any call)."""
    return sorted(p.name for p in directory.iterdir() if TEMP_MARK in p.name)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
