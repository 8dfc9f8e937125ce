"""robovid's public names are one list (``robovid._PUBLIC``): ``__all__``, the lazy attributes, the
type checkers' imports in ``robovid/__init__.py`` and the README's "Public API" list all agree with it."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import robovid

PACKAGE_INIT = Path(robovid.__file__)
README = Path(__file__).resolve().parent.parent / "README.md"
PYPROJECT = README.parent / "pyproject.toml"
PUBLIC = {(module, name) for module, names in robovid._PUBLIC.items() for name in names}
NAMES = [name for _, name in PUBLIC]


def test_all_is_every_public_name_once_sorted() -> None:
    assert len(NAMES) == len(set(NAMES)), sorted(n for n in NAMES if NAMES.count(n) > 1)
    assert robovid.__all__ == sorted(NAMES)
    assert "append_video" in robovid.__all__ and "RobovidError" in robovid.__all__


def test_every_public_name_is_the_object_its_module_defines() -> None:
    for module, name in sorted(PUBLIC):
        assert getattr(robovid, name) is getattr(importlib.import_module(module), name), (module, name)


def test_star_import_gives_exactly_the_public_names() -> None:
    script = "from robovid import *; print(sorted(n for n in dir() if not n.startswith('_')))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == repr(sorted(NAMES))


def test_the_imports_for_type_checkers_are_the_public_names() -> None:
    """The ``if TYPE_CHECKING:`` block imports each public name from its module, as itself (a re-export)."""
    tree = ast.parse(PACKAGE_INIT.read_text(encoding="utf-8"))
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1
    imported = set()
    for statement in blocks[0].body:
        assert isinstance(statement, ast.ImportFrom), ast.dump(statement)
        for alias in statement.names:
            assert alias.asname == alias.name, f"{alias.name} is imported without 'as {alias.name}'"
            imported.add((statement.module, alias.name))
    assert imported == PUBLIC, (sorted(imported - PUBLIC), sorted(PUBLIC - imported))


def test_the_readme_lists_exactly_the_public_names() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("Public API (`robovid.__all__`")
    paragraph = text[start : text.index("\n\n", start)]
    listed = re.findall(r"`([A-Za-z_]\w*)`", paragraph)
    assert len(listed) == len(set(listed))
    assert sorted(listed) == robovid.__all__, (sorted(set(listed) - set(NAMES)), sorted(set(NAMES) - set(listed)))


def test_the_readme_calls_only_public_names() -> None:
    called = set(re.findall(r"\brobovid\.([A-Za-z_]\w*)\(", README.read_text(encoding="utf-8")))
    assert "encode_video_frames" in called
    assert called <= set(NAMES), sorted(called - set(NAMES))


def test_the_package_ships_its_py_typed_marker() -> None:
    """PEP 561: type checkers read robovid's inline hints only when ``py.typed`` is installed with it."""
    assert (PACKAGE_INIT.parent / "py.typed").is_file()
    package_data = re.search(
        r"^\[tool\.setuptools\.package-data\]\n(.*?)(?:\n\[|\Z)", PYPROJECT.read_text(), re.M | re.S
    )
    assert package_data and re.search(r'^robovid = \[[^\]]*"py\.typed"', package_data.group(1), re.M)
