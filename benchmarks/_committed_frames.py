"""Every committed frame of a root checked against the frame the recorder fed (``bench_streaming``).

The recorder's frames come from :mod:`robovid.synthetic` (reproducible: episode ``e``'s frame ``i``
is ``render_frame(scene(w, h, e), w, h, e, i)``), so the checker renders each again and compares it
with the decoded frame at the place the committed rows give it. A frame is wrong when its burnt-in
``(episode, frame)`` index does not read as its own, or when its PSNR against the fed frame is
below :data:`MIN_PSNR_DB`. Frames of a chunk file that no row claims are counted as extra.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

MIN_PSNR_DB = 30.0
"""Below this a decoded frame is not taken as its fed frame's (h264 crf 22 gives ~35-40 dB on this content)."""

FedFrame = Callable[[int, int], "np.ndarray"]
"""``(episode, frame) -> the RGB frame the recorder fed``."""


@dataclass(frozen=True)
class Placement:
    """One committed episode in its chunk file: frames ``first_frame .. first_frame + num_frames - 1``."""

    first_frame: int
    episode: int
    num_frames: int


@dataclass
class Check:
    """What the decoded frames showed against the fed ones."""

    committed: int = 0
    """Frames the committed rows place in the chunk files."""
    checked: int = 0
    """Committed frames decoded and compared (fewer than ``committed`` when a file is short)."""
    wrong: list[tuple[int, int]] = field(default_factory=list)
    """``(episode, frame)`` of every committed frame that is not the frame fed."""
    extra: int = 0
    """Decoded frames no committed row claims."""
    min_psnr_db: float = math.inf
    """The lowest PSNR of a committed frame against its fed frame."""

    def add(self, other: Check) -> None:
        self.committed += other.committed
        self.checked += other.checked
        self.wrong += other.wrong
        self.extra += other.extra
        self.min_psnr_db = min(self.min_psnr_db, other.min_psnr_db)


def synthetic_frames(width: int, height: int) -> FedFrame:
    """The recorder's frames (``robovid.synthetic``), each scene rendered once."""
    from robovid.synthetic import render_frame, scene

    scenes: dict[int, np.ndarray] = {}

    def fed(episode: int, frame: int) -> np.ndarray:
        if episode not in scenes:
            scenes[episode] = scene(width, height, episode)
        return render_frame(scenes[episode], width, height, episode, frame)

    return fed


def check_chunk(path: Path, placements: Sequence[Placement], fed: FedFrame) -> Check:
    """Decode ``path`` once (PyAV) and compare every frame the placements claim with its fed frame."""
    import av

    owner = {p.first_frame + i: (p.episode, i) for p in placements for i in range(p.num_frames)}
    check = Check(committed=len(owner))
    with av.open(str(path)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number not in owner:
                check.extra += 1
                continue
            episode, index = owner[number]
            psnr = _compare(frame.to_ndarray(format="rgb24"), fed(episode, index), episode, index)
            check.checked += 1
            check.min_psnr_db = min(check.min_psnr_db, psnr)
            if math.isnan(psnr) or psnr < MIN_PSNR_DB:
                check.wrong.append((episode, index))
    return check


def _compare(decoded: np.ndarray, fed: np.ndarray, episode: int, index: int) -> float:
    """The PSNR of ``decoded`` against ``fed``; NaN when its index strip is not ``(episode, index)``."""
    from benchmarks._common import psnr_db
    from robovid.synthetic import read_index

    try:
        if read_index(decoded) != (episode, index):
            return math.nan
    except ValueError:  # no readable index: not a frame of this recording
        return math.nan
    return psnr_db(decoded, fed) if decoded.shape == fed.shape else math.nan


def check_root(root: Path, fed: FedFrame) -> Check:
    """Every frame the committed rows of ``root`` place, against the fed frames."""
    from robovid.layout import chunk_path
    from robovid.metadata import read_segments

    chunks: dict[Path, list[Placement]] = {}
    for row in read_segments(root).to_pylist():
        path = chunk_path(root, row["video_key"], row["chunk_index"], row["file_index"])
        chunks.setdefault(path, []).append(Placement(row["first_frame"], row["episode_index"], row["num_frames"]))
    total = Check()
    for path, placements in sorted(chunks.items()):
        total.add(check_chunk(path, placements, fed))
    return total
