"""The example alert rules in deploy/prometheus: valid for Prometheus, and each fires when its cause happens.

``promtool`` (Debian's ``prometheus`` package, installed by ``make setup``) checks the rules and
runs their unit tests (``robovid-alerts.test.yml``: input series for a healthy robot and for
each fault, and the alerts expected at given times, annotations included).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

RULES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES = RULES_DIR / "robovid-alerts.yml"
RULE_TESTS = RULES_DIR / "robovid-alerts.test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is missing: apt-get install prometheus (make setup does)"
        if os.environ.get("ROBOVID_REQUIRE_SYSTEM_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_the_alert_rules_are_valid(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_each_alert_fires_on_its_cause_and_a_healthy_robot_raises_none(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=RULES_DIR, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    defined = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    assert tested == defined, f"alerts without a unit test: {defined - tested}"
