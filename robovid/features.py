"""The ``VideoFrame`` Arrow type, registered with Hugging Face ``datasets`` when it is installed."""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa


@dataclass
class VideoFrame:
    """A dataset feature pointing at one frame of a video: ``{path: string, timestamp: float32}``.

    Example::

        data_dict = [{"image": {"path": "videos/episode_0.mp4", "timestamp": 0.3}}]
        features = {"image": VideoFrame()}
        Dataset.from_dict(data_dict, features=Features(features))
    """

    pa_type: ClassVar[Any] = pa.struct({"path": pa.string(), "timestamp": pa.float32()})
    _type: str = field(default="VideoFrame", init=False, repr=False)

    def __call__(self) -> pa.DataType:
        return self.pa_type


def register_with_datasets() -> bool:
    """Register :class:`VideoFrame` with ``datasets`` if that package is installed; True if done."""
    if importlib.util.find_spec("datasets") is None:
        return False
    from datasets.features.features import register_feature

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'register_feature' is experimental", category=UserWarning)
        register_feature(VideoFrame, "VideoFrame")
    return True
