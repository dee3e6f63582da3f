"""Fixtures of the consumer tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.service_support import (
    ServiceSetup,
    ServiceSetupFactory,
    SettingsFactory,
    set_up_service,
)


@pytest.fixture
def service_setup(
    kafka_bootstrap: str,
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: SettingsFactory,
) -> ServiceSetupFactory:
    """`await service_setup(prefix, partitions)`: this test's names on the shared broker (their
    topics created when `partitions` is given) and the tiny model on the loopback server."""

    async def set_up(prefix: str, partitions: int | None = None) -> ServiceSetup:
        return await set_up_service(
            kafka_bootstrap, http_server, tiny_models, make_settings, prefix, partitions
        )

    return set_up
