"""`ImageFetcher`'s limits: the body size (declared, streamed or decompressed), the time per
attempt, and the deadline of a whole download across its attempts."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from consumer.images import FetchPolicy
from schemas import ErrorCode
from tests.conftest import LoopbackServer
from tests.consumer.images.fetch_support import BODY, fetching, linger, ok

# Nothing may dial anything but loopback (see the `dialled` fixture).
pytestmark = pytest.mark.usefixtures("dialled")


async def test_content_length_over_limit_is_refused_before_reading(
    http_server: LoopbackServer,
) -> None:
    url = http_server.add_bytes("/huge.jpg", b"\x00" * 2_000_000)
    policy = FetchPolicy(max_bytes=100_000, allow_private=True)
    async with fetching(policy) as f:
        error = await f.fail(url, ErrorCode.TOO_LARGE)
        assert f.retries == 0
    assert "Content-Length 2000000" in error.message
    assert http_server.hits["/huge.jpg"] == 1


@pytest.mark.parametrize(("size", "fits"), [(100_000, True), (100_001, False)])
async def test_max_bytes_is_inclusive(http_server: LoopbackServer, size: int, fits: bool) -> None:
    url = http_server.add_bytes("/edge.jpg", b"\x01" * size)
    async with fetching(FetchPolicy(max_bytes=100_000, allow_private=True)) as f:
        if fits:
            assert len(await f.fetch(url)) == size
        else:
            await f.fail(url, ErrorCode.TOO_LARGE)


async def test_streamed_body_over_limit_is_cut_off(http_server: LoopbackServer) -> None:
    chunk = b"\x02" * 65_536
    offered = 1024 * len(chunk)  # 64 MiB if the client kept reading
    written = 0
    finished = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal written
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(offered // len(chunk)):
                await resp.write(chunk)
                written += len(chunk)
        except ConnectionError:
            pass
        finally:
            finished.set()
        return resp

    url = http_server.add_handler("/stream", endless)
    async with fetching(FetchPolicy(max_bytes=300_000, allow_private=True)) as f:
        error = await f.fail(url, ErrorCode.TOO_LARGE)
        assert f.retries == 0
    assert "body exceeds 300000" in error.message
    await asyncio.wait_for(finished.wait(), 5)
    # The client hung up long before the end: only socket buffers' worth was ever written.
    assert written < offered // 4


async def test_gzip_bomb_is_cut_off_after_decompression(http_server: LoopbackServer) -> None:
    bomb = gzip.compress(b"\x00" * 32_000_000, compresslevel=9)
    assert len(bomb) < 100_000

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "image/jpeg"}
        )

    url = http_server.add_handler("/bomb.jpg", handler)
    async with fetching(FetchPolicy(max_bytes=1_000_000, allow_private=True)) as f:
        error = await f.fail(url, ErrorCode.TOO_LARGE)
    assert "body exceeds" in error.message  # the small Content-Length did not let it through


async def test_gzip_encoded_image_is_decompressed(http_server: LoopbackServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=gzip.compress(BODY), headers={"Content-Encoding": "gzip"})

    url = http_server.add_handler("/small.jpg", handler)
    async with fetching() as f:
        assert await f.fetch(url) == BODY


async def test_hanging_server_times_out_and_is_retried(http_server: LoopbackServer) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await linger(request, 5)
        return ok()

    url = http_server.add_handler("/hang", hang)
    policy = FetchPolicy(timeout_s=0.3, retries=1, allow_private=True)
    async with fetching(policy) as f:
        started = time.monotonic()
        error = await f.fail(url, ErrorCode.TIMEOUT)
        elapsed = time.monotonic() - started
        assert f.retries == 1
    assert 0.55 <= elapsed < 1.5  # two attempts of 0.3 s each
    assert "0.3 s" in error.message
    assert http_server.hits["/hang"] == 2


async def test_timeout_bounds_the_whole_redirect_chain(http_server: LoopbackServer) -> None:
    # Each hop answers within the limit; together they do not.
    def slow_redirect(location: str) -> Callable[..., Awaitable[Any]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            await linger(request, 0.15)
            return web.Response(status=302, headers={"Location": location})

        return handler

    http_server.add_bytes("/final.jpg", BODY)
    for i in range(4):
        http_server.add_handler(
            f"/hop{i}", slow_redirect(f"/hop{i + 1}" if i < 3 else "/final.jpg")
        )
    async with fetching(FetchPolicy(timeout_s=0.35, retries=0, allow_private=True)) as f:
        started = time.monotonic()
        await f.fail(http_server.url("/hop0"), ErrorCode.TIMEOUT)
        assert time.monotonic() - started < 0.6
    assert "/final.jpg" not in http_server.hits


async def test_slow_server_then_fast_succeeds(http_server: LoopbackServer) -> None:
    served = 0

    async def slow_once(request: web.Request) -> web.StreamResponse:
        nonlocal served
        served += 1
        if served == 1:
            await linger(request, 5)
        return ok()

    url = http_server.add_handler("/slow", slow_once)
    async with fetching(FetchPolicy(timeout_s=0.3, retries=1, allow_private=True)) as f:
        assert await f.fetch(url) == BODY
    assert http_server.hits["/slow"] == 2


async def test_trickling_body_times_out_as_a_whole(http_server: LoopbackServer) -> None:
    sent = 0

    async def trickle(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse()
        resp.content_length = 100
        await resp.prepare(request)
        try:
            for _ in range(100):
                await resp.write(b"x")
                sent += 1
                await linger(request, 0.1)
                if request.transport is None or request.transport.is_closing():
                    break
        except ConnectionError:
            pass
        return resp

    url = http_server.add_handler("/trickle", trickle)
    async with fetching(FetchPolicy(timeout_s=0.35, retries=0, allow_private=True)) as f:
        started = time.monotonic()
        await f.fail(url, ErrorCode.TIMEOUT)
        elapsed = time.monotonic() - started
    # Each byte arrives well within any per-read timeout; only a whole-response limit stops it.
    assert sent >= 2
    assert 0.3 <= elapsed < 0.9


async def test_deadline_bounds_the_whole_download_across_attempts(
    http_server: LoopbackServer,
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await linger(request, 5)
        return ok()

    url = http_server.add_handler("/hang", hang)
    # Six attempts of 0.3 s would take 1.8 s; the download as a whole gets 0.8 s.
    policy = FetchPolicy(timeout_s=0.3, retries=5, deadline_s=0.8, allow_private=True)
    async with fetching(policy) as f:
        started = time.monotonic()
        error = await f.fail(url, ErrorCode.TIMEOUT)
        elapsed = time.monotonic() - started
    assert 0.75 <= elapsed < 1.4
    assert "0.8 s deadline" in error.message
    assert "no complete response within 0.3 s" in error.message  # the last attempt's failure
    assert http_server.hits["/hang"] == 3


@pytest.mark.usefixtures("real_retry_waits")
async def test_deadline_includes_the_waits_between_attempts(http_server: LoopbackServer) -> None:
    url = http_server.add_bytes("/down", b"busy", status=503)
    policy = FetchPolicy(retries=10, backoff_s=0.2, deadline_s=0.5, allow_private=True)
    async with fetching(policy) as f:
        started = time.monotonic()
        error = await f.fail(url, ErrorCode.TIMEOUT)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0
    assert "HTTP 503" in error.message
    assert 1 <= http_server.hits["/down"] <= 3
