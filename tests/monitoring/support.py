"""What the monitoring tests share: the Prometheus binaries, the metric names an expression
uses, the alert rules and the dashboard's queries as written in the committed files."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from consumer.metrics import Metrics
from monitoring.paths import ALERT_RULES, DASHBOARD_JSON

# Where a fresh machine gets them: README, "Set-up on a fresh machine".
INSTALL_HINT = "install the Debian/Ubuntu package `prometheus` (apt-get install prometheus)"
_METRIC = re.compile(r"\b((?:birdwatch|process)_[a-z_]+)\b")


def prometheus_tool(name: str) -> str:
    """The path of `promtool` or `prometheus`. A missing binary fails the test (never skips):
    these checks are the only proof that the rules and the dashboard work."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` not found on PATH: {INSTALL_HINT}")
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names (Birdwatch's and the process collector's) `expr` selects."""
    return set(_METRIC.findall(expr))


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names() -> set[str]:
    """Every sample name a Birdwatch process exports (also those of labelled families that
    have no labels set yet, such as the per-partition lag)."""
    names = set()
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ())}
        names |= {sample.name for sample in family.samples}
    return names


@dataclass(frozen=True)
class Rule:
    name: str
    expr: str
    annotations: dict[str, str]
    raw: dict[str, Any]


def alert_rules() -> list[Rule]:
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    return [
        Rule(r["alert"], r["expr"], r.get("annotations", {}), r)
        for g in groups
        for r in g["rules"]
        if "alert" in r
    ]


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    legend: str
    expr: str


def dashboard_queries() -> list[PanelQuery]:
    """Every query of every panel of the committed dashboard JSON."""
    board = json.loads(DASHBOARD_JSON.read_text())
    return [
        PanelQuery(p["title"], t.get("legendFormat", ""), t["expr"])
        for p in board["panels"]
        if p["type"] != "row"
        for t in p["targets"]
    ]


def grafana_to_promql(expr: str, job: str, rate_window: str) -> str:
    """`expr` as Grafana sends it, `$job` and `$__rate_interval` replaced by these values."""
    return expr.replace("$__rate_interval", rate_window).replace("$job", job)
