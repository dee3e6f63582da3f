"""Shared fixtures: a loopback HTTP "internet", tiny generated models, isolated settings."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import stamina
from aiohttp import web
from hypothesis import settings

from consumer.config import Settings
from consumer.testing.broker import kafka_broker
from consumer.testing.models import make_labelmap_csv, make_savedmodel_archive, make_tflite_model

# Speed is measured by the benchmarks, not here: on a shared, noisy machine a per-example
# deadline only makes the property tests flaky. (Importing Hypothesis here, at collection, also
# keeps its plugin from importing it at the end of a run, where CPython 3.11.7 can fail with
# "AST constructor recursion depth mismatch", gh-106905, when garbage collection meanwhile
# formats a traceback.)
settings.register_profile("birdwatch", deadline=None)
settings.load_profile("birdwatch")

# `make test-fast`: no broker, no Java, no TensorFlow. A test needing one of those is marked,
# explicitly or (below) by the fixtures it uses.
FAST = "not kafka and not tf and not slow"
MARKING_FIXTURES = {"kafka_bootstrap": "kafka", "tiny_models": "tf"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help=f"run only the fast tests ({FAST}) and fail if TensorFlow gets imported",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("fast"):
        config.option.markexpr = FAST


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in MARKING_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.getoption("fast") and "tensorflow" in sys.modules:
        print("\n--fast: a test imported TensorFlow; mark it `tf`", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# Test inputs read before the autouse fixture below wipes BIRDWATCH_* from the environment.
REAL_MODEL_DIR = os.environ.get("BIRDWATCH_REAL_MODEL_DIR", "")
KAFKA_BOOTSTRAP = os.environ.get("BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS", "")
KAFKA_TEST_PORT = int(os.environ.get("BIRDWATCH_TEST_KAFKA_PORT") or 9092)


# Attempts a retry policy may make in tests: at most its own number (capped), never this many.
TEST_RETRY_ATTEMPTS = 10


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    """Retries happen as configured but without their waits (stamina's testing mode), and
    stamina's own instrumentation stays off as the CLI turns it off (our code logs retries)."""
    stamina.instrumentation.set_on_retry_hooks([])
    with stamina.set_testing(True, attempts=TEST_RETRY_ATTEMPTS, cap=True):
        yield


@pytest.fixture
def real_retry_waits() -> Iterator[None]:
    """For tests of the waits and deadlines themselves: stamina as in production."""
    with stamina.set_testing(False):
        yield


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's BIRDWATCH_* variables or .env file."""
    for name in list(os.environ):
        if name.startswith("BIRDWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class LoopbackServer:
    """An aiohttp server on 127.0.0.1 whose routes tests set as they go."""

    base: str = ""
    routes: dict[str, Handler] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def add_bytes(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/octet-stream",
        status: int = 200,
        delay_s: float = 0.0,
    ) -> str:
        async def handler(request: web.Request) -> web.StreamResponse:
            if delay_s:
                await asyncio.sleep(delay_s)
            return web.Response(body=body, status=status, content_type=content_type)

        self.routes[path] = handler
        return self.url(path)

    def add_handler(self, path: str, handler: Handler) -> str:
        self.routes[path] = handler
        return self.url(path)


@asynccontextmanager
async def loopback_server(host: str = "127.0.0.1") -> AsyncIterator[LoopbackServer]:
    """A `LoopbackServer` listening on `host` (any of 127.0.0.0/8) and a free port."""
    server = LoopbackServer()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        server.hits[request.path] = server.hits.get(request.path, 0) + 1
        handler = server.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="not found")
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.base = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def http_server() -> AsyncIterator[LoopbackServer]:
    async with loopback_server() as server:
        yield server


@pytest.fixture
async def other_host() -> AsyncIterator[LoopbackServer]:
    """A second loopback server on another address (127.0.0.2): another host to the fetcher."""
    async with loopback_server("127.0.0.2") as server:
        yield server


@dataclass(frozen=True)
class TinyModels:
    """Generated models with the real interface (N x INPUT_SHAPE in, 965 out)."""

    tflite: Path
    tf2_archive: Path
    tf1_hub_archive: Path
    labels_csv: bytes


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    folder = tmp_path_factory.mktemp("tiny-models")
    tflite = folder / "tiny.tflite"
    make_tflite_model(tflite)
    tf2 = folder / "tiny-tf2.tar.gz"
    make_savedmodel_archive(tf2, "tf2")
    tf1 = folder / "tiny-tf1-hub.tar.gz"
    make_savedmodel_archive(tf1, "tf1_hub")
    return TinyModels(tflite, tf2, tf1, make_labelmap_csv())


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings built from keyword overrides only (no environment, no .env)."""

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "model_cache_dir": str(tmp_path / "model-cache"),
            "allow_private_networks": True,
            "inference_threads": 1,
            "decode_threads": 2,
            "log_format": "json",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Kafka broker for the session (see consumer/testing/broker.py)."""
    with kafka_broker(KAFKA_BOOTSTRAP, port=KAFKA_TEST_PORT, containers=True) as bootstrap:
        yield bootstrap
