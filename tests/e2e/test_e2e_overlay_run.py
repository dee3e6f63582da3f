"""e2e.overlay: what a run applies, rendered by the real kustomize."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2e.dataserver import Site
from e2e.overlay import GUARANTEES, OVERLAY_PORT, kustomization, write
from tests.deploy.tools import Kustomize, objects_of

SITE = Site(Path("/srv"), "http://10.213.0.1:8765")


def rendered(kustomize: Kustomize, folder: Path, **kwargs: Any) -> list[dict[str, Any]]:
    options = {
        "image": "birdwatch:0.1.0-lite",
        "site": SITE,
        "guarantee": "at_least_once",
        "port": OVERLAY_PORT,
    }
    return kustomize.build(write(folder, **{**options, **kwargs}))


def settings_map(docs: list[dict[str, Any]]) -> dict[str, str]:
    (found,) = [
        m
        for m in objects_of(docs, "ConfigMap")
        if m["metadata"]["name"].startswith("birdwatch-config")
    ]
    data: dict[str, str] = found["data"]
    return data


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_run_sets_the_model_urls_and_the_guarantee(kustomize, tmp_path, guarantee) -> None:
    docs = rendered(kustomize, tmp_path, guarantee=guarantee)
    data = settings_map(docs)
    assert data["BIRDWATCH_MODEL_URL"] == "http://10.213.0.1:8765/aiy_birds_v1/birds_V1_3.tflite"
    assert data["BIRDWATCH_LABELS_URL"] == "http://10.213.0.1:8765/aiy_birds_v1/labelmap.csv"
    assert data["BIRDWATCH_PROCESSING_GUARANTEE"] == guarantee
    # The rest of the overlay's settings stay, and every pod reads the merged ConfigMap.
    assert data["BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS"] == "kafka.birdwatch-e2e.svc:9092"
    name = next(
        m["metadata"]["name"]
        for m in objects_of(docs, "ConfigMap")
        if m["metadata"]["name"].startswith("birdwatch-config")
    )
    refs = {
        c["envFrom"][0]["configMapRef"]["name"]
        for kind in ("Deployment", "Job")
        for obj in objects_of(docs, kind)
        for c in obj["spec"]["template"]["spec"]["containers"]
        if c.get("envFrom")
    }
    assert refs == {name}


def test_run_deploys_the_image_it_built(kustomize, tmp_path) -> None:
    docs = rendered(kustomize, tmp_path, image="registry.local:5000/birdwatch:e2e-lite")
    images = {
        c["image"]
        for kind in ("Deployment", "Job")
        for obj in objects_of(docs, kind)
        for c in obj["spec"]["template"]["spec"].get("initContainers", [])
        + obj["spec"]["template"]["spec"]["containers"]
        if c["name"] != "kafka"
    }
    assert images == {"registry.local:5000/birdwatch:e2e-lite"}


def test_another_port_opens_the_network_policy_for_it(kustomize, tmp_path) -> None:
    default = rendered(kustomize, tmp_path / "a")
    moved = rendered(kustomize, tmp_path / "b", port=9000)

    def web_port(docs: list[dict[str, Any]]) -> int:
        (policy,) = [
            p for p in objects_of(docs, "NetworkPolicy") if p["metadata"]["name"] == "birdwatch-e2e"
        ]
        port: int = policy["spec"]["egress"][1]["ports"][0]["port"]
        return port

    assert web_port(default) == OVERLAY_PORT
    assert web_port(moved) == 9000
    assert "patches" not in kustomization("b:1", SITE, "at_least_once", OVERLAY_PORT)


def test_unknown_guarantee_is_refused() -> None:
    with pytest.raises(ValueError, match="guarantee"):
        kustomization("b:1", SITE, "at_most_once", OVERLAY_PORT)
