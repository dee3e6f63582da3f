"""The Grafana dashboard: generated from monitoring/dashboard.py and committed up to date (with
the Kubernetes manifests derived from it and from the alert rules), every panel queries only
metrics Birdwatch exports, and every Birdwatch metric has a panel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from consumer.metrics import Metrics
from monitoring import __main__ as generator
from monitoring import dashboard
from monitoring.paths import ALERT_RULES, DASHBOARD_JSON, PROMETHEUS_RULE, REPO
from tests.monitoring.support import dashboard_queries, exported_names, metric_names


def test_generated_files_are_up_to_date() -> None:
    assert generator.stale() == [], "run: .venv/bin/python -m monitoring"
    assert generator.main(["--check"]) == 0


def test_a_stale_file_is_reported_and_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check can fail: a hand edit of a generated file is caught, then regenerated (in a
    copy of the files under tmp_path)."""
    real = generator.generated()
    moved = {tmp_path / path.relative_to(REPO): text for path, text in real.items()}
    for path, text in moved.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    copy = tmp_path / DASHBOARD_JSON.relative_to(REPO)
    copy.write_text(copy.read_text().replace("Birdwatch", "Birdwatxh", 1))
    monkeypatch.setattr(generator, "generated", lambda: moved)
    monkeypatch.setattr(generator, "REPO", tmp_path)

    assert generator.stale() == [copy]
    assert generator.main(["--check"]) == 1
    assert "out of date: deploy/grafana/dashboards/birdwatch.json" in capsys.readouterr().out
    assert generator.main([]) == 0
    assert copy.read_text() == DASHBOARD_JSON.read_text()
    assert generator.stale() == []


def test_panels_have_unique_ids_titles_and_queries() -> None:
    board = json.loads(DASHBOARD_JSON.read_text())
    assert board["uid"] == dashboard.UID
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) == len(dashboard.panels())
    for panel in panels:
        assert panel["title"], panel
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert all('job=~"$job"' in t["expr"] for t in panel["targets"]), panel["title"]


def test_panels_query_only_metrics_birdwatch_exports() -> None:
    exported = exported_names()
    for query in dashboard_queries():
        names = metric_names(query.expr)
        assert names, query
        assert names <= exported, f"{query.panel}: unknown {sorted(names - exported)}"


def test_every_birdwatch_metric_has_a_panel() -> None:
    shown = {name for query in dashboard_queries() for name in metric_names(query.expr)}
    families = {
        family.name
        for family in Metrics().registry.collect()
        if family.name.startswith("birdwatch_")
    }
    missing = {
        family
        for family in families
        if not any(shown_name.startswith(family) for shown_name in shown)
    }
    assert not missing, f"no panel shows {sorted(missing)}"


def test_the_prometheus_rule_holds_the_rules_file() -> None:
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERT_RULES.read_text())["groups"]
