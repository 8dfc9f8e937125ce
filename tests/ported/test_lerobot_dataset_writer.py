"""LeRobot's dataset-writer video tests, passing with robovid as LeRobot's video module (ported; assertions unchanged).

The 9 of LeRobot's video tests that go through its dataset writer (from huggingface/lerobot at
7427f31, Apache-2.0): ``TestEncoderConfigPersistence`` (2) and ``TestDepthEncoderConfigPersistence``
(2) of ``tests/datasets/test_video_encoding.py``, ``TestStreamingEncoderIntegration`` (5) of
``tests/datasets/test_streaming_video_encoder.py``. They need LeRobot main itself (its
``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` / ``finalize``), which robovid's venv does
not have: the tests and the substitution (robovid's functions and classes under LeRobot's
video-module names) are in ``lerobot_main_writer.py``, which this module runs with pytest, once,
in the python named by ``ROBOVID_LEROBOT_MAIN_PYTHON`` with this checkout's robovid on ``PYTHONPATH``.
Each test here reports one LeRobot test's outcome (pass, skip, xfail or failure with its traceback).

Skipped when ``ROBOVID_LEROBOT_MAIN_PYTHON`` is unset (CI does not build LeRobot). Building that
python (LeRobot main needs Python 3.12 and, with robovid, PyAV 18): README, "LeRobot's own video tests".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

LEROBOT_MAIN_PYTHON = os.environ.get("ROBOVID_LEROBOT_MAIN_PYTHON", "")
REPO = Path(__file__).resolve().parents[2]
CASES = Path(__file__).resolve().parent / "lerobot_main_writer.py"
LEROBOT_TESTS = (
    "TestEncoderConfigPersistence::test_first_episode_save_persists_encoder_config",
    "TestEncoderConfigPersistence::test_second_episode_does_not_overwrite_encoder_fields",
    "TestDepthEncoderConfigPersistence::test_first_episode_save_persists_depth_encoder_config",
    "TestDepthEncoderConfigPersistence::test_second_episode_does_not_overwrite_depth_encoder_fields",
    "TestStreamingEncoderIntegration::test_add_frame_save_episode_streaming",
    "TestStreamingEncoderIntegration::test_streaming_disabled_creates_pngs",
    "TestStreamingEncoderIntegration::test_multi_episode_streaming",
    "TestStreamingEncoderIntegration::test_clear_episode_buffer_cancels_streaming",
    "TestStreamingEncoderIntegration::test_multi_camera_add_frame_streaming",
)

pytestmark = pytest.mark.skipif(
    not LEROBOT_MAIN_PYTHON or shutil.which(LEROBOT_MAIN_PYTHON) is None,
    reason="set ROBOVID_LEROBOT_MAIN_PYTHON to a python with LeRobot main (7427f31) and PyAV 18 "
    '(README: "LeRobot\'s own video tests")',
)


def _outcome(case: ET.Element) -> tuple[str, str]:
    """(passed | skipped | xfailed | failed, message) of one JUnit <testcase>."""
    for tag in ("failure", "error"):
        found = case.find(tag)
        if found is not None:
            return "failed", f"{found.get('message', '')}\n{found.text or ''}"
    skipped = case.find("skipped")
    if skipped is not None:
        kind = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        return kind, skipped.get("message", "")
    return "passed", ""


@pytest.fixture(scope="module")
def lerobot_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Run lerobot_main_writer.py in LeRobot main's python; each test's outcome by Class::test name."""
    workdir = tmp_path_factory.mktemp("lerobot_main_writer")
    report = workdir / "junit.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROBOVID_", "PYTEST_"))}
    env |= {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [LEROBOT_MAIN_PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest"]
    command += ["--rootdir", str(workdir), "-c", os.devnull, "--basetemp", str(workdir / "tmp")]
    command += ["--junitxml", str(report), str(CASES)]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=1200)
    assert report.exists(), f"LeRobot's pytest wrote no report (exit {done.returncode}):\n{done.stdout[-4000:]}"
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}"
        outcomes[name] = _outcome(case)
    assert set(outcomes) == set(LEROBOT_TESTS), f"lerobot_main_writer.py ran {sorted(outcomes)}"
    return outcomes


@pytest.mark.parametrize("lerobot_test", LEROBOT_TESTS)
def test_lerobot_writer_test_passes_with_robovid(
    lerobot_test: str, lerobot_outcomes: dict[str, tuple[str, str]]
) -> None:
    outcome, message = lerobot_outcomes[lerobot_test]
    if outcome == "skipped":
        pytest.skip(message)
    if outcome == "xfailed":
        pytest.xfail(message)
    if outcome == "failed":
        pytest.fail(f"{lerobot_test} failed in LeRobot's python:\n{message}", pytrace=False)
    assert outcome == "passed", outcome
