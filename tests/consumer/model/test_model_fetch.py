"""Fetching models and label maps over loopback HTTP (consumer/model/fetch.py): TF Hub
handles, HTTP and network failures, label maps."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from consumer.config import TFHUB_BIRDS_LITE_MODEL, TFHUB_BIRDS_MODEL
from consumer.model import ModelError, ModelFetcher
from consumer.model.fetch import cache_key, download_url
from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.model.support import HTML_PAGE, LoopbackResolver, closed_port_url


@pytest.mark.parametrize(
    ("handle", "expected"),
    [
        (
            TFHUB_BIRDS_MODEL,
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1?tf-hub-format=compressed",
        ),
        (
            "https://www.tfhub.dev/google/aiy/vision/classifier/birds_V1/1",
            "https://www.tfhub.dev/google/aiy/vision/classifier/birds_V1/1"
            "?tf-hub-format=compressed",
        ),
        (
            TFHUB_BIRDS_LITE_MODEL,
            "https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3"
            "?lite-format=tflite",
        ),
        (
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1?tf-hub-format=compressed",
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1?tf-hub-format=compressed",
        ),
        (
            "https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3?lite-format=tflite",
            "https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3?lite-format=tflite",
        ),
        (
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1?mirror=eu",
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1"
            "?mirror=eu&tf-hub-format=compressed",
        ),
        (
            "https://example.com/models/birds.tar.gz",
            "https://example.com/models/birds.tar.gz",
        ),
        (
            "https://storage.googleapis.com/tfhub-lite-models/google/lite-model/aiy/birds_V1/3.tflite",
            "https://storage.googleapis.com/tfhub-lite-models/google/lite-model/aiy/birds_V1/3.tflite",
        ),
        ("http://127.0.0.1:8080/lite-model/x?a=1", "http://127.0.0.1:8080/lite-model/x?a=1"),
    ],
    ids=[
        "hub-savedmodel",
        "hub-www",
        "hub-lite",
        "hub-format-already-set",
        "lite-format-already-set",
        "other-query-kept",
        "plain-archive",
        "gcs-lite-path-not-hub",
        "loopback",
    ],
)
def test_download_url(handle: str, expected: str) -> None:
    assert download_url(handle) == expected


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(404, False), (403, False), (410, False), (408, True), (429, True), (500, True), (503, True)],
)
async def test_http_errors(
    http_server: LoopbackServer,
    fetcher: ModelFetcher,
    cache: Path,
    status: int,
    retryable: bool,
) -> None:
    url = http_server.add_bytes("/model.tflite", b"nope", "text/plain", status=status)

    with pytest.raises(ModelError, match=f"answered HTTP {status}") as caught:
        await fetcher.fetch_model(url)

    assert caught.value.retryable is retryable
    assert http_server.hits["/model.tflite"] == 1
    assert os.listdir(cache) == []


async def test_unreachable_server_is_retryable(fetcher: ModelFetcher, cache: Path) -> None:
    with pytest.raises(ModelError, match="failed: ClientConnectorError") as caught:
        await fetcher.fetch_model(closed_port_url())

    assert caught.value.retryable is True
    assert os.listdir(cache) == []


async def test_read_timeout_is_retryable(http_server: LoopbackServer, cache: Path) -> None:
    url = http_server.add_bytes("/slow.tflite", b"late", delay_s=0.5)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.05)) as slow:
        with pytest.raises(ModelError, match=r"failed: .*Timeout") as caught:
            await ModelFetcher(slow, cache).fetch_model(url)

    assert caught.value.retryable is True
    assert os.listdir(cache) == []


async def test_tfhub_handles_download_with_their_format_parameter_through_a_redirect(
    http_server: LoopbackServer, cache: Path, tflite_bytes: bytes, tf2_targz: bytes
) -> None:
    port = http_server.base.rsplit(":", 1)[1]
    kaggle = f"http://kaggle.com:{port}"
    queries: list[tuple[str, str]] = []

    async def hub(request: web.Request) -> web.StreamResponse:
        queries.append((request.path, request.query_string))
        if request.query.get("tf-hub-format") == "compressed":
            raise web.HTTPFound(f"{kaggle}/kaggle/birds.tar.gz")
        if request.query.get("lite-format") == "tflite":
            raise web.HTTPFound(f"{kaggle}/kaggle/birds.tflite")
        return web.Response(body=HTML_PAGE, content_type="text/html")

    saved_model_path = "/google/aiy/vision/classifier/birds_V1/1"
    lite_path = "/google/lite-model/aiy/vision/classifier/birds_V1/3"
    http_server.add_handler(saved_model_path, hub)
    http_server.add_handler(lite_path, hub)
    http_server.add_bytes("/kaggle/birds.tar.gz", tf2_targz)
    http_server.add_bytes("/kaggle/birds.tflite", tflite_bytes)
    hub_handle = f"http://tfhub.dev:{port}{saved_model_path}"
    lite_handle = f"http://tfhub.dev:{port}{lite_path}"

    connector = aiohttp.TCPConnector(resolver=LoopbackResolver())
    async with aiohttp.ClientSession(connector=connector) as hub_session:
        fetcher = ModelFetcher(hub_session, cache)
        savedmodel = await fetcher.fetch_model(hub_handle)
        lite = await fetcher.fetch_model(lite_handle)

    assert queries == [
        (saved_model_path, "tf-hub-format=compressed"),
        (lite_path, "lite-format=tflite"),
    ]
    assert savedmodel.kind == "savedmodel"
    assert savedmodel.url == hub_handle  # cached under the handle, not the download URL
    assert savedmodel.path.parent.name == cache_key(hub_handle)
    assert lite.kind == "tflite"
    assert lite.path.read_bytes() == tflite_bytes


async def test_labels_are_fetched_once_then_cached(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    cache: Path,
    tiny_models: TinyModels,
) -> None:
    url = http_server.add_bytes("/labels.csv", tiny_models.labels_csv, "text/csv")
    fetcher = ModelFetcher(session, cache)

    first = await fetcher.fetch_labels(url)
    second = await fetcher.fetch_labels(url)
    other_instance = await ModelFetcher(session, cache).fetch_labels(url)

    assert first == second == other_instance == tiny_models.labels_csv
    assert http_server.hits["/labels.csv"] == 1
    assert os.listdir(cache) == [f"{cache_key(url)}.labels"]  # no temporary file left


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (503, True)])
async def test_label_errors_are_not_cached(
    http_server: LoopbackServer,
    fetcher: ModelFetcher,
    status: int,
    retryable: bool,
) -> None:
    url = http_server.add_bytes("/labels.csv", b"oops", "text/plain", status=status)

    with pytest.raises(ModelError, match=f"HTTP {status}") as caught:
        await fetcher.fetch_labels(url)
    assert caught.value.retryable is retryable

    http_server.add_bytes("/labels.csv", b"0,a\n", "text/csv")
    assert await fetcher.fetch_labels(url) == b"0,a\n"
    assert http_server.hits["/labels.csv"] == 2


async def test_unreachable_labels_are_retryable(fetcher: ModelFetcher) -> None:
    with pytest.raises(ModelError, match="failed: ClientConnectorError") as caught:
        await fetcher.fetch_labels(closed_port_url("/labels.csv"))
    assert caught.value.retryable is True
