"""docs/OPERATIONS.md keeps up with the settings and the deployment files."""

from __future__ import annotations

from tests.deploy.tools import ALL_KUSTOMIZATIONS, REPO, setting_env_names

OPERATIONS = REPO / "docs" / "OPERATIONS.md"


def test_every_setting_is_explained_as_a_tuning_knob() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    missing = sorted(name for name in setting_env_names() if f"`{name}`" not in text)
    assert not missing, f"docs/OPERATIONS.md does not explain: {missing}"


def test_every_kustomization_is_described() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    for path in ALL_KUSTOMIZATIONS:
        assert f"deploy/k8s/{path}" in text, path


def test_runbook_covers_the_incidents_operators_page_on() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    for incident in (
        "Lag growing",
        "DLQ growing",
        "Model URL down",
        "Broker down",
        "Partition stuck",
        "Oversized record",
        "Pods crash-looping",
    ):
        assert f"**{incident}.**" in text, incident
