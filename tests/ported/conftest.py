"""Session fixture for the LeRobot ports: the clips LeRobot's tests read (see lerobot_fixtures)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from ported.lerobot_fixtures import TEST_ARTIFACTS_DIR, write_artifacts


@pytest.fixture(scope="session", autouse=True)
def lerobot_artifacts() -> Iterator[None]:
    write_artifacts(TEST_ARTIFACTS_DIR)
    yield
    shutil.rmtree(TEST_ARTIFACTS_DIR, ignore_errors=True)
