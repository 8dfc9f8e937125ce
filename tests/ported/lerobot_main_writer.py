"""LeRobot's dataset-writer video tests, run in LeRobot main's python with robovid as its video module.

Not collected by robovid's pytest (the name does not start with ``test_``):
tests/ported/test_lerobot_dataset_writer.py runs this file with pytest in the python named by
``ROBOVID_LEROBOT_MAIN_PYTHON`` (LeRobot at 7427f31, robovid's source on ``PYTHONPATH``) and reports
each test's outcome as its own.

Ported from huggingface/lerobot at commit 7427f31 (Apache-2.0), assertions unchanged:

- ``tests/datasets/test_video_encoding.py``: ``TestEncoderConfigPersistence`` (2) and
  ``TestDepthEncoderConfigPersistence`` (2), with the fixtures they use from LeRobot's test tree
  (``add_frames`` and ``empty_lerobot_dataset_factory`` from ``tests/fixtures/dataset_factories.py``,
  the ``DUMMY_*`` constants from ``tests/fixtures/constants.py``) and the file's ``_read_feature_info``;
- ``tests/datasets/test_streaming_video_encoder.py``: ``TestStreamingEncoderIntegration`` (5).

Adapted only in imports: the encoder configs come from robovid, not ``lerobot.configs``.

The writer under test is LeRobot's own (``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` /
``clear_episode_buffer`` / ``finalize``, in ``lerobot.datasets.dataset_writer``,
``lerobot_dataset`` and ``dataset_metadata``), unmodified. ``robovid_video_module`` (autouse) is the
whole substitution: every name of LeRobot's video module (``lerobot.datasets.video_utils`` and the
encoder configs that moved to ``lerobot.configs.video``) that robovid also exports is replaced by
robovid's, in every loaded ``lerobot`` module that holds it (found by identity, so a module that
imported the name under ``from .video_utils import ...`` is covered). This is what a LeRobot user
adopting robovid does: same names, same semantics.

One bridge is not about robovid: LeRobot main pins ``av<16`` and its ``pyav_utils`` evaluates the
annotation ``av.option.Option`` at import; PyAV 18 (robovid's ``av>=18.1``) removed ``av.option``
and codec-option introspection. ``_let_lerobot_import_under_pyav18`` gives ``av.option`` a
placeholder ``Option`` type so ``lerobot.datasets`` imports; the only LeRobot code that needs real
options (its encoder-config validation) is replaced by robovid's configs, and were any of it called,
the placeholder cannot be built and ``codec.descriptor`` does not exist: the test would fail loudly.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from functools import partial

import av
import numpy as np
import pytest


def _let_lerobot_import_under_pyav18() -> None:
    if hasattr(av, "option") or "av.option" in sys.modules:
        return

    class Option:
        """Placeholder for PyAV<16's ``av.option.Option``, only so LeRobot's annotations evaluate."""

        def __init__(self) -> None:
            raise RuntimeError("av.option.Option is a placeholder: PyAV 18 has no codec-option introspection")

    module = types.ModuleType("av.option", Option.__doc__)
    module.Option = Option  # type: ignore[attr-defined]
    sys.modules["av.option"] = module
    av.option = module  # type: ignore[attr-defined]


_let_lerobot_import_under_pyav18()

import lerobot.configs.video as lerobot_video_configs  # noqa: E402
import lerobot.datasets.video_utils as lerobot_video_utils  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402
from lerobot.datasets.pyav_utils import get_codec  # noqa: E402
from lerobot.datasets.utils import INFO_PATH  # noqa: E402
from lerobot.utils.constants import DEFAULT_FEATURES  # noqa: E402

import robovid  # noqa: E402
from robovid import DepthEncoderConfig, RGBEncoderConfig  # noqa: E402

# ─── The substitution: robovid as LeRobot's video module ───


def robovid_replacements() -> dict[int, tuple[str, object]]:
    """id(LeRobot's object) -> (its name, robovid's object), for each video-module name robovid exports."""
    replacements: dict[int, tuple[str, object]] = {}
    for source in (lerobot_video_utils, lerobot_video_configs):
        for name, original in vars(source).items():
            if name.startswith("_") or name not in robovid.__all__:
                continue
            if getattr(original, "__module__", "").startswith(source.__name__):  # defined there, not imported
                replacements[id(original)] = (name, getattr(robovid, name))
    return replacements


@pytest.fixture(autouse=True)
def robovid_video_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    replacements = robovid_replacements()
    patched = []
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("lerobot") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if id(value) in replacements and replacements[id(value)][0] == attr:
                monkeypatch.setattr(module, attr, replacements[id(value)][1])
                patched.append(f"{module_name}.{attr}")
    writer = sys.modules["lerobot.datasets.dataset_writer"]
    assert writer.encode_video_frames is robovid.encode_video_frames, "the substitution missed the writer"
    yield patched


# ─── From LeRobot's tests/fixtures/constants.py ───

DEFAULT_FPS = 30
DUMMY_REPO_ID = "dummy/repo"
DUMMY_VIDEO_FEATURES = {
    "observation.images.cam": {
        "dtype": "video",
        "shape": (64, 96, 3),
        "names": ["height", "width", "channels"],
    },
    "action": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]},
}
DUMMY_VIDEO_KEY = "observation.images.cam"

DUMMY_DEPTH_FEATURES = {
    "observation.images.depth": {
        "dtype": "video",
        "shape": (64, 96, 1),
        "names": ["height", "width", "channels"],
        "info": {"is_depth_map": True},
    },
    "action": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]},
}
DUMMY_DEPTH_KEY = "observation.images.depth"


# ─── From LeRobot's tests/fixtures/dataset_factories.py ───


def add_frames(dataset: LeRobotDataset, num_frames: int) -> None:
    """Append ``num_frames`` synthetic frames to ``dataset``.

    Generates per-feature payloads from ``dataset.meta``: uint16 depth ramps for
    keys in ``dataset.meta.depth_keys``, uint8 random noise for video/image keys,
    and float32 zeros for everything else. ``DEFAULT_FEATURES`` (timestamp,
    frame_index, ...) are auto-populated by ``add_frame`` and skipped here.
    """
    video_keys = dataset.meta.video_keys
    depth_keys = dataset.meta.depth_keys
    # Smooth gradient base reused per (H, W) to keep depth frames cheap to
    # encode (HEVC Main 12 hates white noise).
    _depth_base_cache: dict[tuple[int, int], np.ndarray] = {}
    for i in range(num_frames):
        frame: dict = {"task": "test"}
        for key, ft in dataset.meta.features.items():
            if key in DEFAULT_FEATURES:
                continue
            shape = ft["shape"]
            if key in depth_keys:
                h, w, _ = shape
                base = _depth_base_cache.setdefault(
                    (h, w),
                    np.linspace(100.0, 10_000.0, h * w, dtype=np.float32).reshape(h, w, 1),
                )
                frame[key] = (base + 50.0 * i).clip(0, 65535).astype(np.uint16)
            elif key in video_keys:
                frame[key] = np.random.randint(0, 256, shape, dtype=np.uint8)
            else:
                frame[key] = np.zeros(shape, dtype=np.float32)
        dataset.add_frame(frame)


@pytest.fixture(scope="session")
def empty_lerobot_dataset_factory():
    return partial(LeRobotDataset.create, repo_id=DUMMY_REPO_ID, fps=DEFAULT_FPS)


# ─── From LeRobot's tests/datasets/test_video_encoding.py ───


# Per-codec skip markers — validation tests only fire when the codec is available
def _require_encoder(vcodec: str) -> pytest.MarkDecorator:
    """Skip the test if ``vcodec`` is not available in the local FFmpeg build."""
    return pytest.mark.skipif(get_codec(vcodec) is None, reason=f"{vcodec!r} not in local FFmpeg build")


require_libsvtav1 = _require_encoder("libsvtav1")
require_hevc = _require_encoder("hevc")


def _read_feature_info(dataset: LeRobotDataset, key: str = DUMMY_VIDEO_KEY) -> dict:
    info = json.loads((dataset.root / INFO_PATH).read_text())
    return info["features"][key]["info"]


class TestEncoderConfigPersistence:
    """Encoder config must be stored as ``video.<field>`` entries in
    ``info["features"][key]["info"]`` when the first episode is saved.
    """

    @require_libsvtav1
    def test_first_episode_save_persists_encoder_config(self, tmp_path, empty_lerobot_dataset_factory):
        cfg = RGBEncoderConfig(vcodec="libsvtav1", g=2, crf=30, preset=12)
        dataset = empty_lerobot_dataset_factory(
            root=tmp_path / "ds", features=DUMMY_VIDEO_FEATURES, use_videos=True, rgb_encoder=cfg
        )

        add_frames(dataset, num_frames=4)
        dataset.save_episode()
        dataset.finalize()

        info = _read_feature_info(dataset)

        assert info["video.height"] == 64
        assert info["video.width"] == 96
        assert info["video.fps"] == 30
        assert info["video.g"] == 2
        assert info["video.crf"] == 30
        assert info["video.preset"] == 12
        assert info["video.fast_decode"] == 0
        assert info["video.video_backend"] == "pyav"
        assert info["video.extra_options"] == {}

    @require_libsvtav1
    def test_second_episode_does_not_overwrite_encoder_fields(self, tmp_path, empty_lerobot_dataset_factory):
        cfg = RGBEncoderConfig(vcodec="libsvtav1", g=2, crf=30, preset=12)
        dataset = empty_lerobot_dataset_factory(
            root=tmp_path / "ds", features=DUMMY_VIDEO_FEATURES, use_videos=True, rgb_encoder=cfg
        )

        add_frames(dataset, num_frames=4)
        dataset.save_episode()
        first_info = dict(_read_feature_info(dataset))

        add_frames(dataset, num_frames=4)
        dataset.save_episode()
        dataset.finalize()

        assert _read_feature_info(dataset) == first_info


class TestDepthEncoderConfigPersistence:
    """Depth mirror of :class:`TestEncoderConfigPersistence`.

    ``DepthEncoderConfig`` must be stored as ``video.<field>`` entries
    (including the depth-specific ``depth_min`` / ``depth_max`` / ``shift`` /
    ``use_log``) under ``info["features"][<depth_key>]["info"]`` when the
    first episode is saved.
    """

    @require_hevc
    def test_first_episode_save_persists_depth_encoder_config(self, tmp_path, empty_lerobot_dataset_factory):
        cfg = DepthEncoderConfig(
            vcodec="hevc",
            pix_fmt="gray12le",
            g=2,
            crf=30,
            extra_options={},
            depth_min=0.05,
            depth_max=8.0,
            shift=2.5,
            use_log=False,
        )
        dataset = empty_lerobot_dataset_factory(
            root=tmp_path / "ds", features=DUMMY_DEPTH_FEATURES, use_videos=True, depth_encoder=cfg
        )

        add_frames(dataset, num_frames=4)
        dataset.save_episode()
        dataset.finalize()

        info = _read_feature_info(dataset, key=DUMMY_DEPTH_KEY)

        # Stream-derived
        assert info["video.height"] == 64
        assert info["video.width"] == 96
        assert info["video.fps"] == 30
        assert info["video.codec"] == "hevc"
        assert info["video.pix_fmt"] == "gray12le"
        assert info["is_depth_map"] is True
        # Base encoder config
        assert info["video.g"] == 2
        assert info["video.crf"] == 30
        assert info["video.fast_decode"] == 0
        assert info["video.video_backend"] == "pyav"
        assert info["video.extra_options"] == {}
        # Depth-specific tuning
        assert info["video.depth_min"] == 0.05
        assert info["video.depth_max"] == 8.0
        assert info["video.shift"] == 2.5
        assert info["video.use_log"] is False

    @require_hevc
    def test_second_episode_does_not_overwrite_depth_encoder_fields(self, tmp_path, empty_lerobot_dataset_factory):
        cfg = DepthEncoderConfig(
            vcodec="hevc",
            pix_fmt="gray12le",
            g=2,
            crf=30,
            depth_min=0.05,
            depth_max=8.0,
            shift=2.5,
            use_log=False,
        )
        dataset = empty_lerobot_dataset_factory(
            root=tmp_path / "ds", features=DUMMY_DEPTH_FEATURES, use_videos=True, depth_encoder=cfg
        )

        add_frames(dataset, num_frames=4)
        dataset.save_episode()
        first_info = dict(_read_feature_info(dataset, key=DUMMY_DEPTH_KEY))

        add_frames(dataset, num_frames=4)
        dataset.save_episode()
        dataset.finalize()

        assert _read_feature_info(dataset, key=DUMMY_DEPTH_KEY) == first_info


# ─── From LeRobot's tests/datasets/test_streaming_video_encoder.py ───


class TestStreamingEncoderIntegration:
    def test_add_frame_save_episode_streaming(self, tmp_path):
        """Full integration test: add_frame -> save_episode with streaming encoding."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        features = {
            "observation.images.cam": {
                "dtype": "video",
                "shape": (64, 96, 3),
                "names": ["height", "width", "channels"],
            },
            "action": {"dtype": "float32", "shape": (6,), "names": ["j1", "j2", "j3", "j4", "j5", "j6"]},
        }

        dataset = LeRobotDataset.create(
            repo_id="test/streaming",
            fps=30,
            features=features,
            root=tmp_path / "streaming_test",
            use_videos=True,
            streaming_encoding=True,
        )

        assert dataset.writer._streaming_encoder is not None

        num_frames = 20
        for _ in range(num_frames):
            frame = {
                "observation.images.cam": np.random.randint(0, 255, (64, 96, 3), dtype=np.uint8),
                "action": np.random.randn(6).astype(np.float32),
                "task": "test task",
            }
            dataset.add_frame(frame)

        dataset.save_episode()

        # Verify dataset metadata
        assert dataset.meta.total_episodes == 1
        assert dataset.meta.total_frames == num_frames

        # Verify stats exist for the video key
        assert dataset.meta.stats is not None
        assert "observation.images.cam" in dataset.meta.stats
        assert "action" in dataset.meta.stats

        dataset.finalize()

    def test_streaming_disabled_creates_pngs(self, tmp_path):
        """Test that disabling streaming encoding falls back to PNG path."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        features = {
            "observation.images.cam": {
                "dtype": "video",
                "shape": (64, 96, 3),
                "names": ["height", "width", "channels"],
            },
            "action": {"dtype": "float32", "shape": (6,), "names": ["j1", "j2", "j3", "j4", "j5", "j6"]},
        }

        dataset = LeRobotDataset.create(
            repo_id="test/no_streaming",
            fps=30,
            features=features,
            root=tmp_path / "no_streaming_test",
            use_videos=True,
            streaming_encoding=False,
        )

        assert dataset.writer._streaming_encoder is None

        num_frames = 5
        for _ in range(num_frames):
            frame = {
                "observation.images.cam": np.random.randint(0, 255, (64, 96, 3), dtype=np.uint8),
                "action": np.random.randn(6).astype(np.float32),
                "task": "test task",
            }
            dataset.add_frame(frame)

        # With streaming disabled, PNG files should be written
        images_dir = dataset.root / "images"
        assert images_dir.exists()

        dataset.save_episode()
        dataset.finalize()

    def test_multi_episode_streaming(self, tmp_path):
        """Test recording multiple episodes with streaming encoding."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        features = {
            "observation.images.cam": {
                "dtype": "video",
                "shape": (64, 96, 3),
                "names": ["height", "width", "channels"],
            },
            "action": {"dtype": "float32", "shape": (2,), "names": ["j1", "j2"]},
        }

        dataset = LeRobotDataset.create(
            repo_id="test/multi_ep",
            fps=30,
            features=features,
            root=tmp_path / "multi_ep_test",
            use_videos=True,
            streaming_encoding=True,
        )

        for ep in range(3):
            num_frames = 10 + ep * 5
            for _ in range(num_frames):
                frame = {
                    "observation.images.cam": np.random.randint(0, 255, (64, 96, 3), dtype=np.uint8),
                    "action": np.random.randn(2).astype(np.float32),
                    "task": f"task_{ep}",
                }
                dataset.add_frame(frame)
            dataset.save_episode()

        assert dataset.meta.total_episodes == 3
        assert dataset.meta.total_frames == 10 + 15 + 20

        dataset.finalize()

    def test_clear_episode_buffer_cancels_streaming(self, tmp_path):
        """Test that clearing episode buffer cancels streaming encoding."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        features = {
            "observation.images.cam": {
                "dtype": "video",
                "shape": (64, 96, 3),
                "names": ["height", "width", "channels"],
            },
            "action": {"dtype": "float32", "shape": (2,), "names": ["j1", "j2"]},
        }

        dataset = LeRobotDataset.create(
            repo_id="test/cancel",
            fps=30,
            features=features,
            root=tmp_path / "cancel_test",
            use_videos=True,
            streaming_encoding=True,
        )

        # Add some frames
        for _ in range(5):
            frame = {
                "observation.images.cam": np.random.randint(0, 255, (64, 96, 3), dtype=np.uint8),
                "action": np.random.randn(2).astype(np.float32),
                "task": "task",
            }
            dataset.add_frame(frame)

        # Cancel and re-record
        dataset.clear_episode_buffer()

        # Record a new episode
        for _ in range(10):
            frame = {
                "observation.images.cam": np.random.randint(0, 255, (64, 96, 3), dtype=np.uint8),
                "action": np.random.randn(2).astype(np.float32),
                "task": "task",
            }
            dataset.add_frame(frame)
        dataset.save_episode()

        assert dataset.meta.total_episodes == 1
        assert dataset.meta.total_frames == 10

        dataset.finalize()

    def test_multi_camera_add_frame_streaming(self, tmp_path):
        """Test that start_episode is called once with multiple video keys."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        features = {
            "observation.images.cam1": {
                "dtype": "video",
                "shape": (64, 96, 3),
                "names": ["height", "width", "channels"],
            },
            "observation.images.cam2": {
                "dtype": "video",
                "shape": (64, 96, 3),
                "names": ["height", "width", "channels"],
            },
            "action": {"dtype": "float32", "shape": (2,), "names": ["j1", "j2"]},
        }

        dataset = LeRobotDataset.create(
            repo_id="test/multi_cam",
            fps=30,
            features=features,
            root=tmp_path / "multi_cam_test",
            use_videos=True,
            streaming_encoding=True,
        )

        num_frames = 15
        for _ in range(num_frames):
            frame = {
                "observation.images.cam1": np.random.randint(0, 255, (64, 96, 3), dtype=np.uint8),
                "observation.images.cam2": np.random.randint(0, 255, (64, 96, 3), dtype=np.uint8),
                "action": np.random.randn(2).astype(np.float32),
                "task": "test task",
            }
            dataset.add_frame(frame)

        dataset.save_episode()

        assert dataset.meta.total_episodes == 1
        assert dataset.meta.total_frames == num_frames

        dataset.finalize()
