"""Downloads at once: the fetcher's and the session's bounds, a fair share per host
(consumer/images/slots.py), and the headers every request identifies itself with."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from consumer.images import FetchPolicy, ImageFetcher, make_image_session
from consumer.images.fetch import USER_AGENT
from tests.conftest import LoopbackServer
from tests.consumer.images.fetch_support import BODY, FAST, fetching, ok

# Nothing may dial anything but loopback (see the `dialled` fixture).
pytestmark = pytest.mark.usefixtures("dialled")


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
