"""The ``VideoFrame`` Arrow type, registered with Hugging Face ``datasets`` when it is installed."""

from __future__ import annotations

import importlib.metadata
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
import structlog

log = structlog.get_logger(__name__)


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
    """Register :class:`VideoFrame` with Hugging Face ``datasets`` if that package is installed; True if done.

    Only an installed ``datasets`` distribution counts. A folder named ``datasets`` on the
    import path (ML projects often have one) is not Hugging Face's package: it is never
    imported when the package is not installed, and when it shadows the installed package
    the registration is skipped with a warning instead of failing ``import robovid``.
    """
    try:
        importlib.metadata.distribution("datasets")
    except importlib.metadata.PackageNotFoundError:
        return False
    try:
        from datasets.features.features import register_feature
    except ImportError as error:
        log.warning(
            "datasets_not_registered",
            reason=f"{type(error).__name__}: {error}",
            hint="a folder or module named 'datasets' on the import path shadows Hugging Face datasets; "
            "rename it, or run from another directory, to use VideoFrame as a datasets feature",
        )
        return False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'register_feature' is experimental", category=UserWarning)
        register_feature(VideoFrame, "VideoFrame")
    return True
