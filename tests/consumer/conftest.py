"""Fixtures of the consumer tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

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


_SPANS = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans this test ends, from the OpenTelemetry SDK with an in-memory exporter. The SDK
    becomes the global provider at the first use (OpenTelemetry allows one per process)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_SPANS))
        trace.set_tracer_provider(provider)
    _SPANS.clear()
    yield _SPANS
    _SPANS.clear()
