"""A small tmpfs mounted for one test: a file system that really runs out of space."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mount_point`` for the test (root only; skipped elsewhere, failed in CI)."""
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        if os.environ.get("ROBOVID_REQUIRE_SYSTEM_TOOLS") == "1":
            pytest.fail(f"cannot mount a tmpfs: {result.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def resize(mount_point: Path, size: str) -> None:
    """Grow or shrink the tmpfs in place (its files stay)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount_point)], check=True)
