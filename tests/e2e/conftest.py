"""The real kustomize of tests/deploy, for rendering what an e2e run applies."""

from __future__ import annotations

import pytest

from tests.deploy.tools import Kustomize, find_kustomize


@pytest.fixture(scope="session")
def kustomize() -> Kustomize:
    found = find_kustomize()
    if found is None:
        pytest.fail("no kustomize (see tests/deploy/tools.py)")
    return found
