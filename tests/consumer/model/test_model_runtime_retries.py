"""`Runtime.load_model` retries what may pass (HTTP 503, refused connections) with backoff
within its deadlines, and fails at once on what cannot (404)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from consumer.model import ModelError
from consumer.runtime import Runtime
from consumer.testing.models import GREY_CLASS
from tests.conftest import TEST_RETRY_ATTEMPTS, LoopbackServer, TinyModels
from tests.consumer.model.runtime_support import (
    LABELS_PATH,
    MODEL_PATH,
    SettingsFactory,
    add_flaky,
    failed_load,
    load,
    retry_events,
)
from tests.consumer.model.support import closed_port_url


async def test_transient_503_is_retried(
    http_server: LoopbackServer, tiny_models: TinyModels, loopback_settings: SettingsFactory
) -> None:
    model_url = add_flaky(http_server, MODEL_PATH, tiny_models.tflite.read_bytes(), failures=2)
    settings = loopback_settings(model_url=model_url)

    with capture_logs() as logs:
        model = await load(settings)

    assert model.classifier.backend == "litert"
    assert http_server.hits[MODEL_PATH] == 3
    retries = retry_events(logs)
    assert [r["attempt"] for r in retries] == [2, 3]
    assert all("HTTP 503" in r["reason"] for r in retries)


async def test_transient_label_failure_is_retried(
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: SettingsFactory,
) -> None:
    labels_url = add_flaky(http_server, LABELS_PATH, tiny_models.labels_csv, failures=1)
    # A slow model download: the label map's hiccup cancels it rather than leaving it running.
    model_url = http_server.add_bytes(MODEL_PATH, tiny_models.tflite.read_bytes(), delay_s=0.3)
    settings = make_settings(model_url=model_url, labels_url=labels_url)

    async with Runtime(settings, progress=False) as rt:
        with capture_logs() as logs:
            model = await rt.load_model()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert all(t.done() for t in others if "fetch_model" in repr(t.get_coro()))

    assert model.labels[GREY_CLASS] == "background"
    assert len(retry_events(logs)) == 1
    assert http_server.hits[LABELS_PATH] == 2
    assert http_server.hits[MODEL_PATH] in (1, 2)
    cache = Path(settings.model_cache_dir)
    assert not list(cache.glob(".staging-*"))
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1


@pytest.mark.usefixtures("real_retry_waits")
async def test_persistent_503_gives_up_at_the_deadline_with_the_last_reason(
    http_server: LoopbackServer, loopback_settings: SettingsFactory
) -> None:
    model_url = http_server.add_bytes(MODEL_PATH, b"busy", "text/plain", status=503)
    settings = loopback_settings(model_url=model_url, model_load_timeout_s=1.5)

    failed = await failed_load(settings, "HTTP 503")

    assert failed.error.retryable is True
    assert "BIRDWATCH_MODEL_URL" in str(failed.error)  # how to use a local copy instead
    assert failed.elapsed_s < 1.5 + 0.5
    # Waits of 0.5-1 s, then 1-1.5 s: two or three attempts fit into 1.5 s.
    assert http_server.hits[MODEL_PATH] in (2, 3)


@pytest.mark.parametrize("path", [MODEL_PATH, LABELS_PATH])
async def test_404_fails_at_once(
    http_server: LoopbackServer, loopback_settings: SettingsFactory, path: str
) -> None:
    settings = loopback_settings()
    http_server.add_bytes(path, b"gone", "text/plain", status=404)  # instead of what it served

    failed = await failed_load(settings, "HTTP 404")

    assert failed.error.retryable is False
    assert http_server.hits[path] == 1
    assert retry_events(failed.logs) == []


@pytest.mark.usefixtures("real_retry_waits")
async def test_refused_connection_is_retried_until_the_deadline(
    loopback_settings: SettingsFactory,
) -> None:
    settings = loopback_settings(model_url=closed_port_url(), model_load_timeout_s=1.5)

    failed = await failed_load(settings, "ClientConnectorError")

    assert len(retry_events(failed.logs)) >= 1
    # It stops at the deadline at the latest, never after it.
    assert 0.45 < failed.elapsed_s < 1.5 + 0.5


@pytest.mark.usefixtures("real_retry_waits")
async def test_a_one_shot_runtime_stops_retrying_an_unreachable_model_early(
    loopback_settings: SettingsFactory,
) -> None:
    settings = loopback_settings(model_url=closed_port_url(), classify_model_retry_s=1.0)
    started = time.monotonic()
    async with Runtime(settings, progress=False, one_shot=True) as rt:
        with capture_logs() as logs, pytest.raises(ModelError) as caught:
            await rt.load_model()
    elapsed = time.monotonic() - started

    message = str(caught.value)
    assert "\n" not in message
    assert "Cannot connect" in message  # what was tried...
    assert settings.model_url in message or "model.tflite" in message
    assert re.search(r"gave up after \d attempt\(s\) in \d s", message)  # ...for how long...
    assert "BIRDWATCH_MODEL_URL" in message  # ...and how to do without the network
    assert "BIRDWATCH_LABELS_URL" in message
    # Attempts at 0, 0.5-1 and 1.5-2.5 s: the retry window of 1 s (not the 600 s load timeout).
    assert 1.0 < elapsed < 4.0
    assert len(retry_events(logs)) >= 1


@pytest.mark.usefixtures("real_retry_waits")
async def test_a_service_runtime_retries_past_the_one_shot_window(
    loopback_settings: SettingsFactory,
) -> None:
    settings = loopback_settings(
        model_url=closed_port_url(), classify_model_retry_s=0.2, model_load_timeout_s=2.0
    )

    failed = await failed_load(settings, "model not loaded within 2 s")

    assert failed.elapsed_s > 1.9
    assert "last failure: GET" in str(failed.error)


async def test_retries_are_bounded_by_attempts_in_testing_mode(
    loopback_settings: SettingsFactory,
) -> None:
    settings = loopback_settings(model_url=closed_port_url())

    failed = await failed_load(settings, "ClientConnectorError")

    # stamina's testing mode (every test): no waits, and at most TEST_RETRY_ATTEMPTS attempts.
    assert len(retry_events(failed.logs)) == TEST_RETRY_ATTEMPTS - 1
    assert f"gave up after {TEST_RETRY_ATTEMPTS} attempt(s)" in str(failed.error)


async def test_unanswered_request_hits_the_load_timeout(
    loopback_settings: SettingsFactory, black_hole: str
) -> None:
    settings = loopback_settings(model_url=black_hole, model_load_timeout_s=1.5)

    failed = await failed_load(settings, r"model not loaded within 1.5 s")

    assert "BIRDWATCH_MODEL_LOAD_TIMEOUT_S" in str(failed.error)
    assert 1.4 < failed.elapsed_s < 3.0


@pytest.mark.usefixtures("real_retry_waits")
async def test_a_model_host_answering_500_stops_classify_within_its_window(
    loopback_settings: SettingsFactory, http_server: LoopbackServer
) -> None:
    # Kaggle's endpoint failing for good: classify gives up after CLASSIFY_MODEL_RETRY_S, not
    # after the service's ten-minute load timeout.
    handle = "google/aiy/tfLite/vision-classifier-birds-v1/3"
    http_server.add_bytes(f"/api/v1/models/{handle}/download", b"oops", "text/plain", status=500)
    settings = loopback_settings(
        model_url=handle, kaggle_url=http_server.base, classify_model_retry_s=1.0
    )
    started = time.monotonic()
    async with Runtime(settings, progress=False, one_shot=True) as rt:
        with pytest.raises(ModelError) as caught:
            await rt.load_model()
    elapsed = time.monotonic() - started

    assert "answered HTTP 500" in str(caught.value)
    assert re.search(r"gave up after \d attempt\(s\)", str(caught.value))
    assert 1.0 < elapsed < 4.0
    assert settings.model_load_timeout_s == 600
