"""`ImageFetcher` against the loopback server: status codes and retries, connection failures
and malformed URLs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from consumer.images import FetchPolicy, ImageFetcher, make_image_session
from schemas import ErrorCode
from tests.conftest import LoopbackServer
from tests.consumer.images.fetch_support import (
    BODY,
    FAST,
    closed_port,
    fetching,
    ok,
    raw_server,
    sequence,
    status,
)

# Nothing may dial anything but loopback (see the `dialled` fixture).
pytestmark = pytest.mark.usefixtures("dialled")


async def test_ok_body_is_returned(http_server: LoopbackServer) -> None:
    url = http_server.add_bytes("/bird.jpg", BODY, "image/jpeg")
    async with fetching() as f:
        assert await f.fetch(url) == BODY
        assert f.retries == 0
    assert http_server.hits["/bird.jpg"] == 1


async def test_empty_body_is_returned_as_is(http_server: LoopbackServer) -> None:
    url = http_server.add_bytes("/empty", b"", status=200)
    async with fetching() as f:
        assert await f.fetch(url) == b""


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 418])
async def test_client_errors_are_http_status_without_retry(
    http_server: LoopbackServer, code: int
) -> None:
    url = http_server.add_bytes("/gone", b"no", status=code)
    async with fetching() as f:
        error = await f.fail(url, ErrorCode.HTTP_STATUS)
        assert f.retries == 0
    assert str(code) in error.message
    assert http_server.hits["/gone"] == 1


async def test_unrouted_path_is_404(http_server: LoopbackServer) -> None:
    async with fetching() as f:
        error = await f.fail(http_server.url("/missing.jpg"), ErrorCode.HTTP_STATUS)
    assert error.message == "HTTP 404"
    assert http_server.hits["/missing.jpg"] == 1


@pytest.mark.parametrize("code", [500, 502, 503, 429])
async def test_transient_status_then_success_is_retried(
    http_server: LoopbackServer, code: int
) -> None:
    url = http_server.add_handler("/flaky", sequence(status(code), ok))
    async with fetching() as f:
        assert await f.fetch(url) == BODY
        assert f.retries == 1
    assert http_server.hits["/flaky"] == 2


async def test_persistent_503_gives_up_after_all_attempts(http_server: LoopbackServer) -> None:
    url = http_server.add_bytes("/down", b"busy", status=503)
    policy = FetchPolicy(retries=3, backoff_s=0.1, allow_private=True)
    async with fetching(policy) as f:
        error = await f.fail(url, ErrorCode.HTTP_STATUS)
        assert f.retries == 3
    assert "503" in error.message
    assert http_server.hits["/down"] == 4


async def test_no_retries_means_one_attempt(http_server: LoopbackServer) -> None:
    url = http_server.add_bytes("/down", b"busy", status=500)
    async with fetching(FetchPolicy(retries=0, allow_private=True)) as f:
        await f.fail(url, ErrorCode.HTTP_STATUS)
        assert f.retries == 0
    assert http_server.hits["/down"] == 1


@pytest.mark.usefixtures("real_retry_waits")
async def test_backoff_really_waits(http_server: LoopbackServer) -> None:
    url = http_server.add_handler("/flaky", sequence(status(500), ok))
    policy = FetchPolicy(retries=1, backoff_s=0.2, allow_private=True)
    async with make_image_session(policy, 1) as session:
        fetcher = ImageFetcher(session, policy, 1)
        started = time.monotonic()
        assert await fetcher.fetch(url) == BODY
        # The first wait: 0.2 s plus up to 0.2 s of jitter.
        assert 0.19 <= time.monotonic() - started < 2.0


async def test_connection_refused_fails_after_retries(dialled: list[Any]) -> None:
    port = closed_port()
    async with fetching() as f:
        error = await f.fail(f"http://127.0.0.1:{port}/bird.jpg", ErrorCode.FETCH_FAILED)
        assert f.retries == FAST.retries
    assert "cannot connect" in error.message
    assert dialled == [("127.0.0.1", port)] * (FAST.retries + 1)


async def test_unresolvable_host_fails_fast_without_retry(dialled: list[Any]) -> None:
    async with fetching() as f:
        started = time.monotonic()
        error = await f.fail("http://nonexistent.invalid/bird.jpg", ErrorCode.FETCH_FAILED)
        assert time.monotonic() - started < 1.5
        assert f.retries == 0
    assert "cannot resolve host" in error.message
    assert dialled == []


async def test_body_cut_short_is_retried_then_fetch_failed() -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()

    server, url, connections = await raw_server(short)
    async with server, fetching(FetchPolicy(retries=1, backoff_s=0, allow_private=True)) as f:
        error = await f.fail(url, ErrorCode.FETCH_FAILED)
        assert f.retries == 1
    assert "connection broke" in error.message
    assert len(connections) == 2


async def test_server_hanging_up_without_answer_is_retried() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return None

    server, url, connections = await raw_server(silent)
    async with server, fetching(FetchPolicy(retries=2, backoff_s=0, allow_private=True)) as f:
        error = await f.fail(url, ErrorCode.FETCH_FAILED)
        assert f.retries == 2
    assert "connection broke" in error.message
    # aiohttp may itself retry a dropped idempotent request once per attempt.
    assert 3 <= len(connections) <= 6


async def test_garbage_response_fails_without_retry() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SPDY/9 banana\r\n\r\n")
        await writer.drain()

    server, url, connections = await raw_server(garbage)
    async with server, fetching() as f:
        await f.fail(url, ErrorCode.FETCH_FAILED)
        assert f.retries == 0
    assert len(connections) == 1


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://[::1]x/", "http://host:99999/", "http://host:abc/", "http://xn--a/"],
)
async def test_malformed_url_is_an_image_error(url: str, dialled: list[Any]) -> None:
    async with fetching() as f:
        await f.fail(url, ErrorCode.BLOCKED_URL)
        assert f.retries == 0
    assert dialled == []
