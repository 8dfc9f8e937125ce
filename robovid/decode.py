"""Decode the frames at given timestamps from a video: LeRobot's decoding API, fixed.

Backends: ``"torchcodec"`` (cached decoders, needs ``robovid[decode]``), ``"pyav"``
(PyAV only; ``"video_reader"`` is accepted as its old alias) and ``"npu"`` (PyAV, then
moved to an Ascend NPU). Every backend follows the same rules (see
``robovid._decode_common``): a timestamp means frame ``round(ts * fps)`` clamped to the
file, that frame must lie within ``tolerance_s`` of it (inclusive) or
:class:`FrameTimestampError` is raised, and frames come back as float32
``[N, 3, H, W]`` in ``[0, 1]`` in query order.

An empty ``timestamps`` raises ``ValueError``: there is no frame size to give an empty
batch without opening the file, and an empty query is almost always a caller's bug.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from robovid._decode_pyav import decode_video_frames_pyav
from robovid._decode_torchcodec import decode_video_frames_torchcodec
from robovid.cache import load_video_decoder_class
from robovid.errors import BackendUnavailableError, MetadataError
from robovid.layout import segments_dir
from robovid.remote import chunk_location, is_url, join

if TYPE_CHECKING:
    import torch

    from robovid._decode_common import Frames

__all__ = [
    "decode_episode_frames",
    "decode_video_frames",
    "decode_video_frames_npu",
    "decode_video_frames_pyav",
    "decode_video_frames_torchcodec",
    "decode_video_frames_torchvision",
    "get_safe_default_codec",
]

log = structlog.get_logger(__name__)

_PYAV_NAMES = ("pyav", "video_reader")
SUPPORTED_BACKENDS = ("torchcodec", "pyav", "video_reader", "npu")


@functools.cache
def get_safe_default_codec() -> str:
    """``"torchcodec"`` if it imports and loads here, else ``"pyav"`` (with a warning). Checked once."""
    try:
        load_video_decoder_class()
    except BackendUnavailableError as error:
        log.warning("torchcodec_unavailable_using_pyav", reason=str(error))
        return "pyav"
    return "torchcodec"


def decode_video_frames(
    video_path: Path | str,
    timestamps: Sequence[float],
    tolerance_s: float,
    backend: str | None = None,
    return_uint8: bool = False,
    is_depth: bool = False,
) -> Frames:
    """Decode the frames at ``timestamps`` (seconds) with ``backend`` (default: :func:`get_safe_default_codec`).

    Returns float32 ``[N, 3, H, W]`` in ``[0, 1]``, or uint8 ``[N, 3, H, W]`` with
    ``return_uint8`` (no float conversion: a quarter of the memory, e.g. to send through a
    DataLoader and normalise on the GPU), a ``torch.Tensor`` (numpy only from ``"pyav"``
    without torch installed). With ``is_depth``, a depth video's uint16 ``[N, 1, H, W]`` samples
    as stored (millimetres for robovid's exact depth, LeRobot's 12-bit codes for ``gray12le``),
    always decoded with PyAV, as LeRobot does (torchcodec gives 8-bit RGB only).
    Raises ``ValueError`` for an unknown backend.
    """
    if is_depth:
        if backend not in (None, "torchcodec", *_PYAV_NAMES):
            raise ValueError(f"Unsupported video backend {backend!r} for depth; depth decodes with 'pyav'.")
        return decode_video_frames_pyav(video_path, timestamps, tolerance_s, is_depth=True)
    if backend is None:
        backend = get_safe_default_codec()
    if backend == "torchcodec":
        return decode_video_frames_torchcodec(video_path, timestamps, tolerance_s, return_uint8=return_uint8)
    if backend in _PYAV_NAMES:
        return decode_video_frames_pyav(video_path, timestamps, tolerance_s, return_uint8=return_uint8)
    if backend == "npu":
        return decode_video_frames_npu(video_path, timestamps, tolerance_s, return_uint8=return_uint8)
    raise ValueError(
        f"Unsupported video backend {backend!r}. Supported values are {', '.join(SUPPORTED_BACKENDS)} "
        "(or None for the best one available)."
    )


def decode_video_frames_torchvision(
    video_path: Path | str,
    timestamps: Sequence[float],
    tolerance_s: float,
    backend: str = "pyav",
    log_loaded_timestamps: bool = False,
) -> Frames:
    """Compatibility name for the PyAV backend (the reference went through torchvision, which robovid never uses)."""
    if backend not in _PYAV_NAMES:
        raise ValueError(
            f"decode_video_frames_torchvision got backend={backend!r}; it supports {', '.join(_PYAV_NAMES)}. "
            "Use decode_video_frames(..., backend=...) for the others."
        )
    return decode_video_frames_pyav(video_path, timestamps, tolerance_s, log_loaded_timestamps)


def decode_video_frames_npu(
    video_path: Path | str,
    timestamps: Sequence[float],
    tolerance_s: float,
    log_loaded_timestamps: bool = False,
    return_uint8: bool = False,
) -> torch.Tensor:
    """Decode with PyAV on the CPU, then move the frames to the Ascend NPU (needs ``torch_npu``)."""
    try:
        import torch_npu  # noqa: F401 -- registers the "npu" device with torch
    except Exception as error:  # ImportError, or OSError/RuntimeError without a sourced CANN toolkit
        raise BackendUnavailableError(
            f"backend='npu' needs torch_npu, which cannot be loaded ({type(error).__name__}: {error}). "
            "Install the torch-npu build matching torch 2.13 (`pip install torch-npu`) and source the CANN "
            "toolkit (`source /usr/local/Ascend/ascend-toolkit/set_env.sh`), or decode on the CPU with "
            "backend='pyav' or 'torchcodec'."
        ) from error
    import torch

    frames = decode_video_frames_pyav(video_path, timestamps, tolerance_s, log_loaded_timestamps, return_uint8)
    return torch.as_tensor(frames).to("npu")


def decode_episode_frames(
    root: Path | str,
    video_key: str,
    episode_index: int,
    timestamps: Sequence[float],
    tolerance_s: float,
    backend: str | None = None,
    is_depth: bool | None = None,
) -> Frames:
    """Decode frames of one episode by the episode's own timestamps (0 = its first frame).

    Looks the episode up in the segments metadata (:mod:`robovid.metadata`) and queries its
    chunk file at ``from_timestamp + t``. Returns what :func:`decode_video_frames` returns, with
    ``is_depth`` as the episode's row says unless given: a depth camera's samples as stored
    (uint16 millimetres for robovid's exact depth), never its 16-bit samples cut to 8-bit RGB.
    ``root`` is a local folder or an fsspec URL (``s3://bucket/robot-17``): :mod:`robovid.remote`.
    """
    from robovid.metadata import find_segment  # pyarrow loads here, not with the decoders

    row = find_segment(root, video_key, episode_index)
    table = join(str(root), segments_dir(Path())) if is_url(root) else segments_dir(Path(root))
    if row is None:
        raise MetadataError(
            f"Episode {episode_index} of camera {video_key!r} is not in {table}: "
            "not encoded yet, or failed (see `robovid status`)."
        )
    if row.chunk_index is None or row.file_index is None or row.from_timestamp is None:
        raise MetadataError(
            f"Episode {episode_index} of camera {video_key!r} has a row in {table} without its "
            "location in a chunk file. Run `robovid verify` on the root."
        )
    path = chunk_location(root, video_key, row.chunk_index, row.file_index)
    if isinstance(path, Path) and not path.exists():
        raise FileNotFoundError(
            errno.ENOENT,
            f"Episode {episode_index} of camera {video_key!r} is in {path}, which is not on this disk. If robovid-ship "
            "shipped it and freed the space (`robovid verify ROOT` counts such files), decode it from the robot's "
            "remote prefix: decode_episode_frames('s3://bucket/prefix/ROBOT', ...)",
            str(path),
        )
    start = row.from_timestamp
    depth = bool(row.video_is_depth_map) if is_depth is None else is_depth
    return decode_video_frames(path, [start + t for t in timestamps], tolerance_s, backend, is_depth=depth)
