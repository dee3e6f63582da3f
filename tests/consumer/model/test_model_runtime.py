"""`Runtime.load_model`: the model and labels from loopback, cached, checked against each
other, and classifying through the pipeline; permanent problems fail without a retry."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

from consumer.model.fetch import cache_key
from consumer.pipeline import WorkItem
from consumer.runtime import Runtime
from consumer.testing.models import GREY_CLASS, NUM_CLASSES, RED_CLASS
from schemas import ImageEvent, PredictionResult
from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.model.runtime_support import (
    LABELS_PATH,
    MODEL_PATH,
    SettingsFactory,
    failed_load,
    load,
    red_batch,
    retry_events,
)
from tests.images import RED, solid_png


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
