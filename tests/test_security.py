"""Security: no symlink is followed out of the root, no shell or ffconcat list is built, names stay names.

"Writes only under the root" is checked on the real syscall trace in ``test_power_loss.py``.
"""

from __future__ import annotations

import ast
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Episode, check_invariants, png_digest, record, rows_by_key, start_daemon, wait_for

from robovid.layout import chunk_path, episode_dir
from robovid.synthetic import write_episode

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(REPO / "robovid").rglob("*.py"), *(REPO / "daemon").rglob("*.py")])


def _tree_digest(directory: Path) -> dict[str, str]:
    """Every entry under ``directory`` (not followed through symlinks) with a hash of its content."""
    out = {}
    for path in sorted(directory.rglob("*")):
        key = path.relative_to(directory).as_posix()
        if path.is_symlink():
            out[key] = "-> " + os.readlink(path)
        elif path.is_file():
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


# symlinks out of the root ------------------------------------------------------------------------
@dataclass
class SymlinkRun:
    root: Path
    outside: Path
    outside_before: dict[str, str]
    outside_after: dict[str, str]
    pngs_before: dict[Episode, str | None]
    failed: dict[tuple[str, int], dict[str, Any]]


@pytest.fixture(scope="module")
def symlink_run(tmp_path_factory: pytest.TempPathFactory) -> SymlinkRun:
    """One service run on a root with a good episode and three ways out: a frame, an episode, a camera."""
    base = tmp_path_factory.mktemp("symlinks")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    episodes = record(root, ["good", "linked frame"], range(1))
    frame = episode_dir(root, "linked frame", 0) / "frame-000003.png"
    write_episode(outside / "frames", 0, 8, 64, 48, seed=5)
    frame.unlink()
    frame.symlink_to(outside / "frames" / "frame-000003.png")
    write_episode(outside / "episode", 0, 8, 64, 48, seed=6)
    episode_dir(root, "linked episode", 0).parent.mkdir(parents=True)
    episode_dir(root, "linked episode", 0).symlink_to(outside / "episode", target_is_directory=True)
    write_episode(outside / "camera" / "episode-000000", 0, 8, 64, 48, seed=7)
    (root / "images" / "linked camera").symlink_to(outside / "camera", target_is_directory=True)
    episodes += [Episode("linked episode", 0, 8), Episode("linked camera", 0, 8)]
    outside_before = _tree_digest(outside)
    pngs_before = {e: png_digest(root, e) for e in episodes}
    daemon = start_daemon(root)
    try:
        wait_for(lambda: ("good", 0) in rows_by_key(root), "the good episode's row", daemon=daemon)
        wait_for(lambda: len(daemon.events_named("episode_failed")) >= 3, "three episode_failed events", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    failed = {(e["camera"], e["episode"]): e for e in daemon.events_named("episode_failed")}
    return SymlinkRun(root, outside, outside_before, _tree_digest(outside), pngs_before, failed)


@pytest.mark.parametrize(
    "camera", ["linked frame", "linked episode", "linked camera"], ids=["frame", "episode-folder", "camera-folder"]
)
def test_episode_reaching_outside_the_root_through_a_symlink_fails_and_nothing_outside_is_touched(
    symlink_run: SymlinkRun, camera: str
) -> None:
    event = symlink_run.failed.get((camera, 0))
    assert event is not None, f"no episode_failed for {camera!r}: {sorted(symlink_run.failed)}"
    assert event["error_type"] == "UnsafePathError", event
    assert (camera, 0) not in rows_by_key(symlink_run.root)
    assert png_digest(symlink_run.root, Episode(camera, 0, 8)) == symlink_run.pngs_before[Episode(camera, 0, 8)]
    assert not chunk_path(symlink_run.root, camera, 0, 0).exists()
    assert symlink_run.outside_after == symlink_run.outside_before, "a file outside the root was changed or deleted"


def test_an_episode_inside_the_root_is_still_processed_beside_the_symlinked_ones(symlink_run: SymlinkRun) -> None:
    assert ("good", 0) in rows_by_key(symlink_run.root)
    assert png_digest(symlink_run.root, Episode("good", 0, 8)) is None


# no shell, no ffconcat list, no cross-filesystem move -----------------------------------------------------
FORBIDDEN_MODULES = {"subprocess", "pty", "asyncio.subprocess"}
FORBIDDEN_CALLS = {
    "os.system",
    "os.popen",
    "os.posix_spawn",
    "os.posix_spawnp",
    "shutil.move",
    "asyncio.create_subprocess_exec",
    "asyncio.create_subprocess_shell",
}
FORBIDDEN_PREFIXES = ("os.exec", "os.spawn")


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (prose may name what the code avoids)."""
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            out.add(id(body[0].value))
    return out


def _findings(path: Path, base: Path = REPO) -> list[str]:
    """Each forbidden construct in one module, as ``file:line: what``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = _docstrings(tree)
    where = path.relative_to(base).as_posix()
    found = []
    for node in ast.walk(tree):
        found += [f"{where}:{getattr(node, 'lineno', '?')}: {what}" for what in _forbidden(node, docstrings)]
    return found


def _forbidden(node: ast.AST, docstrings: set[int]) -> list[str]:
    if isinstance(node, ast.Import):
        return [f"import {a.name}" for a in node.names if a.name in FORBIDDEN_MODULES]
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        names = {f"{module}.{a.name}" for a in node.names}
        bad = module in FORBIDDEN_MODULES or bool(names & (FORBIDDEN_CALLS | FORBIDDEN_MODULES))
        bad = bad or any(n.startswith(FORBIDDEN_PREFIXES) for n in names)
        return [f"from {module} import {', '.join(a.name for a in node.names)}"] if bad else []
    if isinstance(node, ast.Call):
        return _forbidden_call(node)
    text = node.value if isinstance(node, ast.Constant) and id(node) not in docstrings else None
    if isinstance(text, str) and ("ffconcat" in text.lower() or "-f concat" in text):
        return [f"string {text[:40]!r} builds an ffconcat list"]
    return []


def _forbidden_call(node: ast.Call) -> list[str]:
    name = _dotted(node.func)
    found = [f"call {name}()"] if name in FORBIDDEN_CALLS or name.startswith(FORBIDDEN_PREFIXES) else []
    for keyword in node.keywords:
        value = keyword.value.value if isinstance(keyword.value, ast.Constant) else None
        if keyword.arg == "shell" and value is True:
            found.append("shell=True")
        if keyword.arg == "format" and isinstance(value, str) and value.lower() == "concat":
            found.append('format="concat" (an FFmpeg concat demuxer list)')
    return found


def test_static_source_tree_has_the_expected_files() -> None:
    names = {p.relative_to(REPO).as_posix() for p in SOURCES}
    assert {"robovid/append.py", "robovid/durable.py", "daemon/stages.py", "daemon/service.py"} <= names


def test_library_and_service_never_spawn_a_process_build_an_ffconcat_list_or_move_across_filesystems() -> None:
    """No subprocess/pty import, no os.system/popen/exec*/spawn*, no shell=True, no concat demuxer, no shutil.move."""
    found = [finding for path in SOURCES for finding in _findings(path)]
    assert not found, "forbidden constructs in robovid/ or daemon/:\n" + "\n".join(found)


def test_static_check_catches_each_forbidden_construct(tmp_path: Path) -> None:
    """The checker itself: each construct in a throwaway module is reported with its file and line."""
    sample = tmp_path / "robovid" / "bad.py"
    sample.parent.mkdir()
    sample.write_text(
        '"""Docstrings may say ffconcat and shutil.move."""\n'
        "import subprocess\n"
        "import os, shutil, av\n"
        "from os import system\n"
        "os.system('x')\n"
        "os.popen('x')\n"
        "os.execvp('x', ['x'])\n"
        "subprocess.run('x', shell=True)\n"
        "av.open('list.txt', format='concat')\n"
        "LIST = 'ffconcat version 1.0'\n"
        "shutil.move('a', 'b')\n"
    )
    found = _findings(sample, base=tmp_path)
    lines = sorted(int(f.split(":")[1]) for f in found)
    assert lines == [2, 4, 5, 6, 7, 8, 9, 10, 11], found
    assert all(f.startswith("robovid/bad.py:") for f in found)


# names are data ------------------------------------------------------------------------------------
ODD_KEYS = [
    "$(touch pwned)",
    "`touch pwned-backtick`",
    'it\'s a "quoted" key',
    "new\nline",
    "; touch pwned-semicolon #",
    "kamera ü 日本 🤖",
    "-f concat",
]


def _pwned(where: Path, recursive: bool) -> list[Path]:
    return sorted(where.rglob("pwned*") if recursive else where.glob("pwned*"))


def test_camera_keys_with_shell_syntax_and_unicode_are_processed_literally(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert not _pwned(tmp_path, True) and not _pwned(Path.cwd(), False), "remove the stray pwned* files first"
    episodes = record(root, ODD_KEYS, range(1))
    originals = {e: png_digest(root, e) or "" for e in episodes}
    daemon = start_daemon(root)
    try:
        wait_for(lambda: len(rows_by_key(root)) == len(episodes), "a row per camera key", daemon=daemon)
        wait_for(lambda: all(png_digest(root, e) is None for e in episodes), "PNGs deleted", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert not daemon.events_named("episode_failed")
    check_invariants(root, episodes, originals, final=True)
    assert sorted(os.listdir(root / "videos")) == sorted(ODD_KEYS), "each video lands under videos/<exact key>/"
    assert all(chunk_path(root, key, 0, 0).is_file() for key in ODD_KEYS)
    assert sorted(key for key, _ in rows_by_key(root)) == sorted(ODD_KEYS)
    assert not _pwned(tmp_path, True), "a camera key was executed"
    assert not _pwned(Path.cwd(), False), "a camera key was executed"
