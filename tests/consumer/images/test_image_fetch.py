"""ImageFetcher against the loopback server: status codes, retries, redirects, limits, timeouts."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from consumer.images import FetchPolicy, ImageError, ImageFetcher, make_image_session
from consumer.images.fetch import MAX_REDIRECTS, USER_AGENT
from schemas import ErrorCode
from tests.conftest import LoopbackServer

# Nothing may dial anything but loopback (see the `dialled` fixture).
pytestmark = pytest.mark.usefixtures("dialled")

BODY = b"\xff\xd8\xff\xe0 pretend jpeg bytes"
FAST = FetchPolicy(
    timeout_s=2.0, connect_timeout_s=1.0, retries=2, backoff_s=0.05, allow_private=True
)


@dataclass
class Fetching:
    """A fetcher on a real session, with the retries it logged (stamina's testing mode, set
    for every test, removes the waits between attempts)."""

    fetcher: ImageFetcher
    logs: list[MutableMapping[str, Any]] = field(default_factory=list)

    @property
    def retries(self) -> int:
        return sum(1 for entry in self.logs if entry["event"] == "fetch_retry")

    async def fetch(self, url: str) -> bytes:
        return await self.fetcher.fetch(url)

    async def fail(self, url: str, code: ErrorCode) -> ImageError:
        with pytest.raises(ImageError) as info:
            await self.fetcher.fetch(url)
        assert info.value.code is code, info.value.message
        return info.value


@asynccontextmanager
async def fetching(
    policy: FetchPolicy = FAST,
    concurrency: int = 4,
    session: aiohttp.ClientSession | None = None,
) -> AsyncIterator[Fetching]:
    own = session or make_image_session(policy, concurrency)
    try:
        with capture_logs() as logs:
            yield Fetching(ImageFetcher(own, policy, concurrency), logs)
    finally:
        await own.close()


async def linger(request: web.Request, seconds: float) -> None:
    """Sleep up to `seconds`, returning early once the client has hung up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.02)


def sequence(*responses: Callable[[], web.StreamResponse]) -> Callable[..., Awaitable[Any]]:
    """A handler answering the n-th request with the n-th response (the last one repeats)."""
    served = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal served
        make = responses[min(served, len(responses) - 1)]
        served += 1
        return make()

    return handler


def status(code: int) -> Callable[[], web.StreamResponse]:
    return lambda: web.Response(status=code, text=f"status {code}")


def ok() -> web.StreamResponse:
    return web.Response(body=BODY, content_type="image/jpeg")


def redirect(location: str, code: int = 302) -> Callable[..., Awaitable[Any]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, headers={"Location": location})

    return handler


# --- status codes and retries -----------------------------------------------------------------


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


# --- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirect_is_followed(http_server: LoopbackServer, code: int) -> None:
    http_server.add_bytes("/final.jpg", BODY)
    url = http_server.add_handler("/old", redirect("/final.jpg", code))
    async with fetching() as f:
        assert await f.fetch(url) == BODY
    assert http_server.hits == {"/old": 1, "/final.jpg": 1}


async def test_absolute_and_relative_redirects_chain(http_server: LoopbackServer) -> None:
    http_server.add_bytes("/img/final.jpg", BODY)
    http_server.add_handler("/a", redirect(http_server.url("/img/b"), 301))
    http_server.add_handler("/img/b", redirect("final.jpg", 302))  # relative to /img/
    async with fetching() as f:
        assert await f.fetch(http_server.url("/a")) == BODY
    assert http_server.hits == {"/a": 1, "/img/b": 1, "/img/final.jpg": 1}


def redirect_chain(server: LoopbackServer, hops: int) -> str:
    """/r0 -> /r1 -> ... -> /r{hops-1} -> /final.jpg; returns the first URL."""
    server.add_bytes("/final.jpg", BODY)
    for i in range(hops):
        target = f"/r{i + 1}" if i + 1 < hops else "/final.jpg"
        server.add_handler(f"/r{i}", redirect(target))
    return server.url("/r0")


async def test_five_redirects_are_followed(http_server: LoopbackServer) -> None:
    url = redirect_chain(http_server, MAX_REDIRECTS)
    assert MAX_REDIRECTS == 5
    async with fetching() as f:
        assert await f.fetch(url) == BODY
    assert http_server.hits["/final.jpg"] == 1


async def test_six_redirects_fail(http_server: LoopbackServer) -> None:
    url = redirect_chain(http_server, MAX_REDIRECTS + 1)
    async with fetching() as f:
        error = await f.fail(url, ErrorCode.FETCH_FAILED)
        assert f.retries == 0
    assert "redirects" in error.message
    assert all(http_server.hits[f"/r{i}"] == 1 for i in range(MAX_REDIRECTS + 1))
    assert "/final.jpg" not in http_server.hits


async def test_redirect_loop_fails(http_server: LoopbackServer) -> None:
    url = http_server.add_handler("/loop", redirect("/loop"))
    async with fetching() as f:
        await f.fail(url, ErrorCode.FETCH_FAILED)
    assert http_server.hits["/loop"] == MAX_REDIRECTS + 1


async def test_redirect_to_an_error_reports_the_final_status(http_server: LoopbackServer) -> None:
    url = http_server.add_handler("/moved", redirect("/nowhere"))
    async with fetching() as f:
        error = await f.fail(url, ErrorCode.HTTP_STATUS)
    assert error.message == "HTTP 404"


async def test_malformed_redirect_location_fails(http_server: LoopbackServer) -> None:
    url = http_server.add_handler("/bad", redirect("http://[::1"))
    async with fetching() as f:
        await f.fail(url, ErrorCode.FETCH_FAILED)
        assert f.retries == 0


# --- size limits -------------------------------------------------------------------------------


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


# --- timeouts ----------------------------------------------------------------------------------


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


# --- connection failures -----------------------------------------------------------------------


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


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


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


async def raw_server(
    reply: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, str, list[int]]:
    """A bare TCP server on loopback for responses aiohttp's server refuses to produce."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        await reply(reader, writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/bird.jpg", connections


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


async def test_redirect_to_an_invalid_host_is_an_image_error(http_server: LoopbackServer) -> None:
    url = http_server.add_handler("/moved", redirect("http://xn--a/bird.jpg"))
    async with fetching() as f:
        await f.fail(url, ErrorCode.BLOCKED_URL)


# --- headers and concurrency -------------------------------------------------------------------


async def test_identifying_headers_are_sent(http_server: LoopbackServer) -> None:
    seen: dict[str, str] = {}

    async def record(request: web.Request) -> web.StreamResponse:
        seen.update(request.headers)
        return ok()

    url = http_server.add_handler("/headers", record)
    async with fetching() as f:
        await f.fetch(url)
    assert seen["User-Agent"] == USER_AGENT
    assert seen["Accept"] == "image/*"


class Gauge:
    """Counts requests in the handler at once and remembers the peak."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0.1)
            return ok()
        finally:
            self.now -= 1


async def test_fetcher_bounds_concurrent_downloads(http_server: LoopbackServer) -> None:
    gauge = Gauge()
    url = http_server.add_handler("/slow.jpg", gauge.handler)
    # A roomy connection pool, so only the fetcher's own bound can hold requests back.
    async with fetching(concurrency=2, session=make_image_session(FAST, 50)) as f:
        bodies = await asyncio.gather(*(f.fetch(url) for _ in range(6)))
    assert bodies == [BODY] * 6
    assert gauge.peak == 2
    assert http_server.hits["/slow.jpg"] == 6


async def test_session_pool_bounds_concurrent_connections(http_server: LoopbackServer) -> None:
    gauge = Gauge()
    url = http_server.add_handler("/slow.jpg", gauge.handler)
    policy = FetchPolicy(allow_private=True)
    async with make_image_session(policy, 2) as session:
        fetcher = ImageFetcher(session, policy, 50)
        bodies = await asyncio.gather(*(fetcher.fetch(url) for _ in range(6)))
    assert bodies == [BODY] * 6
    assert gauge.peak == 2


class Hold:
    """A handler that keeps each request until released, counting those it holds."""

    def __init__(self) -> None:
        self.held = 0
        self.release = asyncio.Event()

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.held += 1
        try:
            await self.release.wait()
            return ok()
        finally:
            self.held -= 1


async def test_one_host_holds_only_its_share_of_the_slots(
    http_server: LoopbackServer, other_host: LoopbackServer
) -> None:
    slow = Hold()
    stuck = http_server.add_handler("/stuck.jpg", slow.handler)
    fine = other_host.add_bytes("/fine.jpg", BODY, "image/jpeg")
    session = make_image_session(FAST, 50)
    async with fetching(session=session) as f:
        fetcher = ImageFetcher(session, FAST, concurrency=4, per_host=2)
        hanging = [asyncio.create_task(fetcher.fetch(stuck)) for _ in range(10)]
        while slow.held < 2:
            await asyncio.sleep(0.01)
        # Eight of the stuck host's downloads wait for its share, holding no shared slot.
        assert fetcher.slots.holding("127.0.0.1") == 10
        bodies = await asyncio.wait_for(asyncio.gather(*(fetcher.fetch(fine) for _ in range(6))), 5)
        assert bodies == [BODY] * 6
        assert slow.held == 2
        slow.release.set()
        assert await asyncio.gather(*hanging) == [BODY] * 10
        assert f.retries == 0
    assert fetcher.slots.holding("127.0.0.1") == 0
