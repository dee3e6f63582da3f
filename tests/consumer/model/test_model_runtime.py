"""`Runtime.load_model`: model and labels from loopback, with retries, deadlines and checks."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from consumer.config import Settings
from consumer.model import LoadedModel, ModelError
from consumer.model.fetch import cache_key
from consumer.model_input import INPUT_SHAPE
from consumer.pipeline import WorkItem
from consumer.runtime import Runtime
from consumer.testing.models import GREY_CLASS, NUM_CLASSES, RED_CLASS
from schemas import ImageEvent, PredictionResult
from tests.conftest import TEST_RETRY_ATTEMPTS, LoopbackServer, TinyModels
from tests.images import RED, solid_png

MODEL_PATH = "/models/birds.tflite"
LABELS_PATH = "/labels/birds.csv"

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def loopback_settings(
    http_server: LoopbackServer, tiny_models: TinyModels, make_settings: SettingsFactory
) -> SettingsFactory:
    """Settings naming the tiny model (at MODEL_PATH) and its labels (at LABELS_PATH) on the
    loopback server. A `model_url` or `labels_url` given is taken as it is: nothing is served
    in its place."""

    def build(**overrides: object) -> Settings:
        if "model_url" not in overrides:
            overrides["model_url"] = http_server.add_bytes(
                MODEL_PATH, tiny_models.tflite.read_bytes()
            )
        if "labels_url" not in overrides:
            overrides["labels_url"] = http_server.add_bytes(
                LABELS_PATH, tiny_models.labels_csv, "text/csv"
            )
        return make_settings(**overrides)

    return build


def add_flaky(server: LoopbackServer, path: str, body: bytes, failures: int) -> str:
    """Answer 503 `failures` times, then serve `body`."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls <= failures:
            return web.Response(status=503, text="busy")
        return web.Response(body=body, content_type="application/octet-stream")

    return server.add_handler(path, handler)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.tflite"


@pytest.fixture
async def black_hole() -> AsyncIterator[str]:
    """A URL whose server accepts the connection and never answers."""
    release = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/model.tflite"
    release.set()
    server.close()
    await server.wait_closed()


def red_batch(n: int = 1) -> Any:
    batch = np.zeros((n, *INPUT_SHAPE), np.uint8)
    batch[..., 0] = 255
    return batch


def retry_events(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "model_load_retry"]


async def load(settings: Settings) -> LoadedModel:
    """The model `settings` name, loaded by a runtime of its own."""
    async with Runtime(settings, progress=False) as rt:
        return await rt.load_model()


@dataclass
class FailedLoad:
    error: ModelError
    logs: list[MutableMapping[str, Any]]
    elapsed_s: float  # from opening the runtime to closing it


async def failed_load(settings: Settings, match: str) -> FailedLoad:
    """Load the model `settings` name, expecting a ModelError that matches `match`."""
    started = time.monotonic()
    async with Runtime(settings, progress=False) as rt:
        with capture_logs() as logs, pytest.raises(ModelError, match=match) as caught:
            await rt.load_model()
    return FailedLoad(caught.value, logs, time.monotonic() - started)


# --- success ----------------------------------------------------------------------------------


async def test_loads_tflite_and_labels(
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    loopback_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = loopback_settings()
    model_url, labels_url = settings.model_url, settings.labels_url

    model = await load(settings)

    assert model.name == model_url
    assert model.classifier.backend == "litert"
    assert model.classifier.num_classes == NUM_CLASSES
    assert len(model.labels) == NUM_CLASSES
    assert model.labels[GREY_CLASS] == "background"
    assert model.labels[RED_CLASS] == f"Species {RED_CLASS}"
    assert model.size_bytes == tiny_models.tflite.stat().st_size
    assert model.from_cache is False
    assert model.fetch_s > 0
    assert model.load_s > 0
    assert int(model.classifier.predict(red_batch(2)).argmax(axis=1)[1]) == RED_CLASS
    assert http_server.hits == {MODEL_PATH: 1, LABELS_PATH: 1}
    cache = tmp_path / "model-cache"
    assert sorted(os.listdir(cache)) == sorted(
        [cache_key(model_url), f"{cache_key(labels_url)}.labels"]
    )


async def test_second_runtime_loads_from_the_cache(
    http_server: LoopbackServer, loopback_settings: SettingsFactory
) -> None:
    settings = loopback_settings()
    first = await load(settings)
    http_server.routes.clear()  # the "internet" is gone: only the cache can help now
    second = await load(settings)

    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.size_bytes == first.size_bytes
    assert second.labels == first.labels
    assert http_server.hits == {MODEL_PATH: 1, LABELS_PATH: 1}


async def test_cache_off_leaves_nothing_behind(
    loopback_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = loopback_settings(model_cache_dir="")
    assert settings.cache_path is None
    temp_root = tmp_path / "tmp"  # this test's own temporary folder, not the shared /tmp
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))

    async with Runtime(settings, progress=False) as rt:
        model = await rt.load_model()
        during = [p.name for p in temp_root.iterdir()]

    assert model.from_cache is False
    assert len(during) == 1  # a private folder while running...
    assert during[0].startswith("birdwatch-model-")
    assert list(temp_root.iterdir()) == []  # ...removed on exit
    assert not (tmp_path / "model-cache").exists()


@pytest.mark.tf
async def test_loads_a_savedmodel_archive(
    http_server: LoopbackServer, tiny_models: TinyModels, loopback_settings: SettingsFactory
) -> None:
    settings = loopback_settings(
        model_url=http_server.add_bytes("/birds.tar.gz", tiny_models.tf2_archive.read_bytes())
    )

    model = await load(settings)

    assert model.classifier.backend == "tensorflow"
    assert model.labels[GREY_CLASS] == "background"
    assert int(model.classifier.predict(red_batch()).argmax()) == RED_CLASS


async def test_the_pipeline_classifies_with_the_loaded_model(
    http_server: LoopbackServer, loopback_settings: SettingsFactory
) -> None:
    settings = loopback_settings(max_batch_size=4, max_batch_delay_ms=5)
    red_url = http_server.add_bytes("/img/red.png", solid_png(RED), "image/png")
    results: list[PredictionResult] = []

    async def sink(item: WorkItem, result: PredictionResult) -> None:
        results.append(result)

    async with Runtime(settings, progress=False) as rt:
        model_task = asyncio.create_task(rt.load_model())
        pipeline = rt.pipeline(model_task, sink)
        try:
            pipeline.submit(ImageEvent(id="bird-1", url=red_url))
            await pipeline.drain()
        finally:
            await pipeline.close()

    [result] = results
    assert result.status == "ok", result.error
    assert result.id == "bird-1"
    assert result.model == settings.model_url
    assert result.predictions[0].label_id == RED_CLASS
    assert result.predictions[0].label == f"Species {RED_CLASS}"


# --- retries and deadlines ----------------------------------------------------------------------


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


# --- permanent problems -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "reason", "model_hits"),
    [
        (b"id,name\n" + b"".join(b"%d,bird %d\n" % (i, i) for i in range(964)), "964 labels", 1),
        (b"0,a\n1,b\n", "2 labels but the model has 965 classes", 1),
        # A map that does not parse cancels the model download running beside it.
        ("0,Pic épeiche\n".encode("latin-1"), "not UTF-8", 1),
        (b"0,a\n0,b\n", "duplicate id 0", 1),
    ],
    ids=["one-short", "tiny", "latin-1", "duplicate"],
)
async def test_unusable_labels_fail_without_retry(
    http_server: LoopbackServer,
    loopback_settings: SettingsFactory,
    labels: bytes,
    reason: str,
    model_hits: int,
) -> None:
    settings = loopback_settings(labels_url=http_server.add_bytes(LABELS_PATH, labels, "text/csv"))

    failed = await failed_load(settings, reason)

    assert failed.error.retryable is False
    assert retry_events(failed.logs) == []
    assert http_server.hits.get(MODEL_PATH, 0) <= model_hits
    assert http_server.hits[LABELS_PATH] == 1


async def test_html_instead_of_a_model_fails_without_retry(
    http_server: LoopbackServer, loopback_settings: SettingsFactory
) -> None:
    page = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
    settings = loopback_settings(model_url=http_server.add_bytes(MODEL_PATH, page, "text/html"))

    failed = await failed_load(settings, "neither a TFLite flatbuffer")

    assert failed.error.retryable is False
    assert http_server.hits[MODEL_PATH] == 1
