"""The systemd units and their example environment files.

systemd accepts each unit without a complaint, its sandbox keeps the exposure score low, and each
example environment file documents every setting with its default. robovid-watch has no network;
robovid-ship needs one, which is most of its higher exposure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from robovid_watch.config import Settings
from robovid_watch.ship.config import ShipSettings

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
TOOL_TIMEOUT_S = 30
# `security --offline` arrived in systemd 250.
MIN_SYSTEMD_VERSION = 250


@dataclass(frozen=True)
class Unit:
    path: Path
    env_example: Path
    settings: type[BaseSettings]
    prefix: str
    """The settings this example file documents: fields whose name starts with it."""
    max_exposure: float
    env_files: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path.name


WATCH = Unit(
    SYSTEMD_DIR / "robovid-watch.service",
    SYSTEMD_DIR / "robovid.env",
    Settings,
    "",
    2.0,
    ("/etc/robovid/robovid.env",),
)
SHIP = Unit(
    SYSTEMD_DIR / "robovid-ship.service",
    SYSTEMD_DIR / "robovid-ship.env",
    ShipSettings,
    "ship_",
    2.5,
    ("/etc/robovid/robovid.env", "/etc/robovid/robovid-ship.env", "-/etc/robovid/robovid-ship.credentials"),
)
UNITS = pytest.mark.parametrize("unit", [WATCH, SHIP], ids=["watch", "ship"])


def _settings_defaults(unit: Unit) -> dict[str, str]:
    """The unit's settings and their built-in defaults, as the example file must show them."""
    defaults = {}
    for name, field in unit.settings.model_fields.items():
        if not name.startswith(unit.prefix):
            continue
        value = "" if field.default_factory is not None and not isinstance(field.default, str) else field.default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        defaults[f"ROBOVID_{name.upper()}"] = "" if value is None else str(value)
    return defaults


COMMENTED_ASSIGNMENT = re.compile(r"^#(ROBOVID_[A-Z0-9_]*=.*)$")
# What systemd's EnvironmentFile= reads without surprises: no spaces, quotes or trailing comments.
PLAIN_ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*=[^\s\"'#]*$")


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """Path of a systemd-analyze that has `security --offline`; skips locally, fails in CI."""
    path = shutil.which("systemd-analyze")
    version = _systemd_version(path) if path else None
    if path and version is not None and version >= MIN_SYSTEMD_VERSION:
        return path
    found = f"systemd-analyze of systemd {version}" if path else "no systemd-analyze on PATH"
    reason = f"{found}; these tests need systemd >= {MIN_SYSTEMD_VERSION} (Debian 12: apt-get install systemd)"
    if os.environ.get("ROBOVID_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(f"{reason}. ROBOVID_REQUIRE_SYSTEM_TOOLS=1 makes this a failure.")
    pytest.skip(reason)


def _systemd_version(path: str) -> int | None:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S).stdout
    match = re.match(r"systemd (\d+)", out)
    return int(match.group(1)) if match else None


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run(argv, capture_output=True, text=True, encoding="utf-8", env=env, timeout=TOOL_TIMEOUT_S)


def _unit_for_verify(unit: Unit, tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart= names an executable stub in tmp_path.

    `verify` fails when ExecStart= does not exist, and /opt/robovid/.venv is only there on an
    installed robot PC. Everything else in the copy is byte for byte the unit under test.
    """
    stub = tmp_path / "bin" / unit.path.stem
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text, count = re.subn(r"(?m)^ExecStart=.*$", f"ExecStart={stub}", unit.path.read_text())
    if count != 1:
        pytest.fail(f"{unit.path} must have exactly one ExecStart= line, found {count}")
    copy = tmp_path / unit.name
    copy.write_text(text)
    return copy


def _verify_complaints(systemd_analyze: str, unit: Path) -> tuple[int, list[str], str]:
    """Exit code, the lines about this unit, and the whole output of `systemd-analyze verify`.

    verify exits 0 on unknown keys and unparsable values and only prints them, so the output
    decides. Lines that do not name this unit are about the host's own units and are ignored.
    """
    result = _run([systemd_analyze, "verify", "--man=no", str(unit)])
    output = result.stdout + result.stderr
    complaints = [line for line in output.splitlines() if unit.name in line or str(unit) in line]
    return result.returncode, complaints, output


def _parse_unit(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> values in order, for a unit without line continuations."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return values


def _env_example_assignments(unit: Unit) -> dict[str, str]:
    lines = unit.env_example.read_text().splitlines()
    pairs = [m.group(1).partition("=") for line in lines if (m := COMMENTED_ASSIGNMENT.match(line))]
    return {key: value for key, _, value in pairs}


@UNITS
def test_verify_accepts_the_unit_without_complaint(systemd_analyze: str, tmp_path: Path, unit: Unit) -> None:
    returncode, complaints, output = _verify_complaints(systemd_analyze, _unit_for_verify(unit, tmp_path))
    assert returncode == 0 and complaints == [], f"systemd-analyze verify:\n{output}"


def test_verify_check_catches_a_misspelled_directive(systemd_analyze: str, tmp_path: Path) -> None:
    unit = _unit_for_verify(WATCH, tmp_path)
    unit.write_text(unit.read_text().replace("\nNice=", "\nNicee="))
    _, complaints, output = _verify_complaints(systemd_analyze, unit)
    assert any("Nicee" in line for line in complaints), f"systemd-analyze verify:\n{output}"


@UNITS
def test_security_exposure_stays_low(systemd_analyze: str, unit: Unit) -> None:
    result = _run([systemd_analyze, "security", "--offline=true", "--no-pager", str(unit.path)])
    output = result.stdout + result.stderr
    match = re.search(rf"Overall exposure level for {re.escape(unit.name)}: (\d+(?:\.\d+)?)", output)
    assert match, f"no overall exposure in systemd-analyze security output:\n{output}"
    exposed = "\n".join(line for line in output.splitlines() if line.startswith("✗"))
    assert float(match.group(1)) <= unit.max_exposure, f"exposure {match.group(1)}, open items:\n{exposed}"


def test_only_the_shipper_has_the_network() -> None:
    watch, ship = _parse_unit(WATCH.path.read_text()), _parse_unit(SHIP.path.read_text())
    assert watch["Service.PrivateNetwork"] == ["yes"] and watch["Service.RestrictAddressFamilies"] == ["AF_UNIX"]
    assert "Service.PrivateNetwork" not in ship
    assert ship["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


@UNITS
def test_unit_is_a_notify_service_that_does_not_restart_on_bad_config(unit: Unit) -> None:
    parsed = _parse_unit(unit.path.read_text())
    assert parsed["Service.Type"] == ["notify"]
    assert parsed["Service.NotifyAccess"] == ["main"]
    assert parsed["Service.Restart"] == ["on-failure"]
    assert "78" in " ".join(parsed["Service.RestartPreventExitStatus"]).split()
    assert tuple(parsed["Service.EnvironmentFile"]) == unit.env_files


@UNITS
def test_default_recording_root_is_writable_and_matches_the_example(unit: Unit) -> None:
    parsed = _parse_unit(unit.path.read_text())
    environment = dict(v.partition("=")[::2] for v in parsed["Service.Environment"])
    writable = " ".join(parsed["Service.ReadWritePaths"]).split()
    assert environment["ROBOVID_ROOT"] in writable
    assert environment["ROBOVID_ROOT"] == _env_example_assignments(WATCH)["ROBOVID_ROOT"]


@UNITS
def test_env_example_shows_every_setting_with_its_default(unit: Unit) -> None:
    assert _env_example_assignments(unit) == _settings_defaults(unit)


@UNITS
def test_env_example_documents_every_variable_it_names(unit: Unit) -> None:
    text = unit.env_example.read_text()
    assigned = _env_example_assignments(unit)
    named = set(re.findall(r"ROBOVID_[A-Z0-9_]+", text))
    assert named - set(assigned) <= {"ROBOVID_METRICS_DIR", "ROBOVID_LOG_FORMAT"}, "documented elsewhere only"
    for name in assigned:
        doc = re.search(rf"(?m)^# {name}: .+\n(?:# .*\n)*?# Default: .+\n(?:# .*\n)*#{name}=", text)
        assert doc, f"{name} in {unit.env_example} needs a '# {name}: ...' and '# Default: ...' comment"


@UNITS
def test_env_example_uncommented_is_plain_key_value_lines(unit: Unit) -> None:
    lines = unit.env_example.read_text().splitlines()
    uncommented = [COMMENTED_ASSIGNMENT.sub(r"\1", line) for line in lines]
    settings = [line for line in uncommented if line and not line.startswith("#")]
    assert all(PLAIN_ASSIGNMENT.match(line) for line in settings), settings
    assert len(settings) == len({line.partition("=")[0] for line in settings}), "a variable appears twice"
    assert len(settings) == len(_settings_defaults(unit))
