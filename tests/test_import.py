"""Importing robovid (what the daemon on a robot PC does) loads neither torch nor torchcodec, nor the service."""

from __future__ import annotations

import importlib.util
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import robovid

IMPORT_TIMEOUT_S = 120
HEAVY = ("torch", "torchcodec")
MODULES = ["robovid", "robovid.append", "robovid.encode", "robovid.concat", "robovid.probe"]
LIBRARY_MODULES = ["robovid", *(f"robovid.{info.name}" for info in pkgutil.iter_modules(robovid.__path__))]


def loaded_modules(statement: str, packages: tuple[str, ...] = HEAVY) -> list[str]:
    """Run ``statement`` in a fresh interpreter; return the modules of ``packages`` left in sys.modules."""
    script = (
        f"{statement}\n"
        "import json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", MODULES)
def test_importing_robovid_does_not_import_torch(module: str) -> None:
    assert loaded_modules(f"import {module}") == []


def test_importing_every_module_and_the_public_names_does_not_import_torch() -> None:
    assert loaded_modules("; ".join(f"import {m}" for m in MODULES) + "; from robovid import *") == []


def test_importing_any_library_module_never_imports_the_service() -> None:
    """The library is the lower layer: ``robovid_watch`` (folder ``daemon/``) may import it, never the reverse."""
    assert "robovid.verify" in LIBRARY_MODULES and "robovid._movie" in LIBRARY_MODULES
    statement = "; ".join(f"import {m}" for m in LIBRARY_MODULES) + "; from robovid import *"
    assert loaded_modules(statement, ("robovid_watch",)) == []


def test_the_probe_sees_a_module_that_was_imported() -> None:
    """Guard against a vacuous pass: the same subprocess probe reports what an import did load."""
    assert "numpy" in loaded_modules("import numpy", ("numpy",))
    assert "robovid_watch.cli" in loaded_modules("import robovid_watch.cli", ("robovid_watch",))


@pytest.mark.parametrize(
    "layout",
    [
        {},  # an empty folder: a namespace package named datasets
        {"__init__.py": "raise SystemExit('this project folder must not be imported by robovid')\n"},
        {"features.py": "raise SystemExit('this project module must not be imported by robovid')\n"},
    ],
    ids=["empty", "package", "module-inside"],
)
def test_a_datasets_folder_in_the_working_directory_does_not_break_import(
    tmp_path: Path, layout: dict[str, str]
) -> None:
    """ML projects often have a ``datasets/`` folder; Hugging Face ``datasets`` is not installed here."""
    folder = tmp_path / "datasets"
    folder.mkdir()
    for name, text in layout.items():
        (folder / name).write_text(text)
    script = "import robovid; print(robovid.VideoFrame()())"

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT_S,
        check=False,
    )

    assert importlib.util.find_spec("datasets") is None, "Hugging Face datasets is installed: this case needs it absent"
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "struct<path: string, timestamp: float>"
