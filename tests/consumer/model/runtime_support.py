"""Helpers of the `Runtime.load_model` tests: where the loopback server serves the tiny model
and its labels, a server that fails first, loading and failing to load with the logs."""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from consumer.config import Settings
from consumer.model import LoadedModel, ModelError
from consumer.model_input import INPUT_SHAPE
from consumer.runtime import Runtime
from tests.conftest import LoopbackServer

MODEL_PATH = "/models/birds.tflite"

LABELS_PATH = "/labels/birds.csv"

SettingsFactory = Callable[..., Settings]


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
