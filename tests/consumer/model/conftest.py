"""Fixtures of the model-layer tests: an HTTP session, a cache folder, a fetcher, the tiny
models' bytes, TensorFlow (skipped when absent), the tiny model loaded by LiteRT, settings
naming the tiny model on the loopback server, and a server that never answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consumer.config import Settings
from consumer.model import Classifier, ModelFetcher, load_classifier
from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.model.runtime_support import LABELS_PATH, MODEL_PATH, SettingsFactory
from tests.consumer.model.tiny_checks import artifact


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def fetcher(session: aiohttp.ClientSession, cache: Path) -> ModelFetcher:
    return ModelFetcher(session, cache)


@pytest.fixture
def tflite_bytes(tiny_models: TinyModels) -> bytes:
    return tiny_models.tflite.read_bytes()


@pytest.fixture
def tf2_targz(tiny_models: TinyModels) -> bytes:
    return tiny_models.tf2_archive.read_bytes()


@pytest.fixture
def tf() -> Any:
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def litert(tiny_models: TinyModels) -> Classifier:
    return load_classifier(artifact(tiny_models.tflite, "tflite"), 2)


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
