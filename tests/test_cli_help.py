"""`robovid --help` and every subcommand's `--help` read as recorded in tests/cli_help/ (argparse at 100 columns).

The CLI's text is its interface to people and scripts: a refactoring (daemon/cli.py split into
modules) must not change a word of it. If you changed the CLI on purpose, record the new text:

    .venv/bin/python tests/test_cli_help.py --update
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest

HELP_DIR = Path(__file__).with_name("cli_help")
COMMANDS = ["", "process", "convert", "verify", "status", "info", "lerobot", "retake", "compact", "merge", "simulate"]


def help_text(command: str) -> str:
    from robovid_watch.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*([command] if command else []), "--help"])
    return out.getvalue()


def recorded(command: str) -> Path:
    return HELP_DIR / f"{command or 'robovid'}.txt"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c or "robovid")
def test_help_text_is_unchanged(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert help_text(command) == recorded(command).read_text(), (
        f"`robovid {command} --help` changed; if on purpose: .venv/bin/python tests/test_cli_help.py --update"
    )


def test_every_subcommand_is_recorded() -> None:
    from robovid_watch.cli import _parser

    parser = _parser()
    subcommands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert sorted(subcommands.choices) == sorted(c for c in COMMANDS if c)  # type: ignore[union-attr]


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    os.environ["COLUMNS"] = "100"
    HELP_DIR.mkdir(exist_ok=True)
    for name in COMMANDS:
        recorded(name).write_text(help_text(name))
    print(f"recorded {len(COMMANDS)} help texts in {HELP_DIR}")
