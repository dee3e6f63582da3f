"""The kustomization a run applies: deploy/k8s/overlays/e2e with this run's image, model URLs
and delivery guarantee (a generated overlay of the overlay, so the checked-in one stays usable
as is)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from e2e.dataserver import Site
from e2e.settings import REPO

OVERLAY = REPO / "deploy" / "k8s" / "overlays" / "e2e"
NAMESPACE = "birdwatch-e2e"
GUARANTEES = ("at_least_once", "exactly_once")
OVERLAY_PORT = 8765  # the web server's port in the checked-in overlay's NetworkPolicy


def kustomization(
    image: str, site: Site, guarantee: str, port: int, overlay: str = str(OVERLAY)
) -> dict[str, Any]:
    if guarantee not in GUARANTEES:
        raise ValueError(f"guarantee must be one of {GUARANTEES}, not {guarantee!r}")
    name, _, tag = image.rpartition(":")
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize takes only relative paths here.
        "resources": [overlay],
        "images": [{"name": "birdwatch", "newName": name, "newTag": tag}],
        "configMapGenerator": [
            {
                "name": "birdwatch-config",
                "behavior": "merge",
                "literals": [
                    f"BIRDWATCH_MODEL_URL={site.model_url}",
                    f"BIRDWATCH_LABELS_URL={site.labels_url}",
                    f"BIRDWATCH_PROCESSING_GUARANTEE={guarantee}",
                ],
            }
        ],
    }
    if port != OVERLAY_PORT:
        doc["patches"] = [
            {
                "target": {"kind": "NetworkPolicy", "name": "birdwatch-e2e"},
                "patch": json.dumps(
                    [{"op": "replace", "path": "/spec/egress/1/ports/0/port", "value": port}]
                ),
            }
        ]
    return doc


def write(folder: Path, image: str, site: Site, guarantee: str, port: int) -> Path:
    """Write the run's kustomization (JSON is YAML) into `folder`; `kubectl apply -k` it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(
        json.dumps(
            kustomization(image, site, guarantee, port, os.path.relpath(OVERLAY, folder)),
            indent=2,
        )
        + "\n"
    )
    return folder
