"""The alert rules: valid for Prometheus (`promtool check rules`), their unit tests pass
(`promtool test rules`: series in, alerts out), every alert is tested, has a runbook in
docs/OPERATIONS.md and selects only metrics Birdwatch exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from monitoring.paths import ALERT_RULES, ALERT_TESTS, REPO
from tests.monitoring.support import alert_rules, exported_names, metric_names, prometheus_tool

OPERATIONS = REPO / "docs" / "OPERATIONS.md"


def promtool(*args: str, cwd: Path = ALERT_RULES.parent) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [prometheus_tool("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_promtool_checks_the_rules() -> None:
    proc = promtool("check", "rules", str(ALERT_RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in proc.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    proc = promtool("test", "rules", str(ALERT_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The unit tests catch a wrong threshold: with the stuck-partition threshold at 30 min,
    the case that expects it to fire fails."""
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    text = ALERT_RULES.read_text()
    broken = text.replace("(birdwatch_oldest_uncommitted_seconds) > 300", "(x) > 1800")
    assert broken != text
    (tmp_path / ALERT_RULES.name).write_text(broken)
    proc = promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert proc.returncode != 0
    assert "BirdwatchPartitionStuck" in proc.stdout + proc.stderr


def test_every_alert_has_a_case_that_fires() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == {rule.name for rule in alert_rules()}


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of `markdown`."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_every_alert_links_to_its_runbook_section() -> None:
    anchors = _anchors(OPERATIONS.read_text(encoding="utf-8"))
    for rule in alert_rules():
        url = rule.annotations.get("runbook_url", "")
        path, _, anchor = url.partition("#")
        assert path == "docs/OPERATIONS.md", rule.name
        assert anchor == rule.name.lower(), rule.name
        assert anchor in anchors, f"{rule.name}: no section #{anchor} in docs/OPERATIONS.md"
        assert rule.annotations.get("summary"), rule.name
        assert rule.annotations.get("description"), rule.name
        assert rule.raw["labels"]["severity"] in {"critical", "warning", "info"}, rule.name


def test_alerts_select_only_metrics_birdwatch_exports() -> None:
    exported = exported_names()
    for rule in alert_rules():
        names = metric_names(rule.expr)
        assert names, rule.name
        assert names <= exported, f"{rule.name}: unknown {sorted(names - exported)}"
