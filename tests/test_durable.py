"""robovid.durable: which temp files a restart may remove."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from robovid.durable import is_stale_temp_path, temp_path_for


def test_a_temp_file_is_stale_only_once_its_writer_is_gone(tmp_path: Path) -> None:
    final = tmp_path / "file-000.mp4"
    mine = temp_path_for(final)
    assert str(os.getpid()) in mine.name
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = mine.with_name(mine.name.replace(f"{os.getpid()}-", f"{exited.stdout.strip()}-"))

    assert not is_stale_temp_path(mine)  # this process may still publish it
    assert is_stale_temp_path(dead)
    assert not is_stale_temp_path(final)
    assert not is_stale_temp_path(tmp_path / "file-000.mp4.robovid-tmp-notapid")
