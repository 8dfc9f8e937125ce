"""The ``VideoFrame`` Arrow type, registered with Hugging Face ``datasets`` when it is installed.

Registration happens when this module is first imported (``robovid.VideoFrame``), not at
``import robovid``, and only if no ``VideoFrame`` is registered yet: LeRobot registers its own
(the same struct) when ``lerobot.datasets.video_utils`` is imported, and ``datasets`` warns
"Overwriting feature type" whenever a registered name is registered again. Imported after
``robovid.VideoFrame`` was used, LeRobot's registration replaces robovid's (with that warning).
"""

from __future__ import annotations

import importlib.metadata
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
    """Register :class:`VideoFrame` with Hugging Face ``datasets`` if it is installed and has none; True if done now.

    Only an installed ``datasets`` distribution counts. A folder named ``datasets`` on the
    import path (ML projects often have one) is not Hugging Face's package: it is never
    imported when the package is not installed, and when it shadows the installed package
    the registration is skipped with a warning instead of failing ``import robovid``.
    A ``VideoFrame`` already registered (LeRobot's) is never registered over.
    """
    try:
        importlib.metadata.distribution("datasets")
    except importlib.metadata.PackageNotFoundError:
        return False
    try:
        from datasets.features import features
    except ImportError as error:
        import structlog  # only here: robovid.VideoFrame needs nothing but pyarrow (a LeRobot venv has no structlog)

        structlog.get_logger(__name__).warning(
            "datasets_not_registered",
            reason=f"{type(error).__name__}: {error}",
            hint="a folder or module named 'datasets' on the import path shadows Hugging Face datasets; "
            "rename it, or run from another directory, to use VideoFrame as a datasets feature",
        )
        return False
    if "VideoFrame" in getattr(features, "_FEATURE_TYPES", {}):
        return False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'register_feature' is experimental", category=UserWarning)
        features.register_feature(VideoFrame, "VideoFrame")
    return True


register_with_datasets()
