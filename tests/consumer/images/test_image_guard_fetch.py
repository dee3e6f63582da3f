"""The fetcher with the SSRF guard, against the real loopback server: refused before any
connection, every redirect hop checked, names resolving to loopback refused. Names are only
ever "resolved" by fake resolvers or to loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from consumer.images import ImageFetcher, make_image_session
from consumer.images.fetch import USER_AGENT
from consumer.images.guard import (
    PublicOnlyResolver,
)
from tests.conftest import LoopbackServer
from tests.consumer.images.guard_support import BODY, GUARDED, OPEN, FakeDNS, expect_blocked

# Nothing may dial anything but loopback (see the `dialled` fixture).
pytestmark = pytest.mark.usefixtures("dialled")


@pytest.fixture
async def guarded() -> AsyncIterator[ImageFetcher]:
    """The production wiring with the guard on: `make_image_session` + `allow_private=False`."""
    async with make_image_session(GUARDED, 4) as session:
        yield ImageFetcher(session, GUARDED, 4)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "127.0.0.1.",
        "localhost",
        "[::1]",
        "[::ffff:127.0.0.1]",
    ],
)
async def test_guarded_fetcher_refuses_the_loopback_server(
    http_server: LoopbackServer, guarded: ImageFetcher, dialled: list[Any], host: str
) -> None:
    http_server.add_bytes("/bird.png", BODY, "image/png")
    port = URL(http_server.base).port
    await expect_blocked(guarded, f"http://{host}:{port}/bird.png")
    assert http_server.hits == {}
    assert dialled == []


async def test_open_fetcher_reaches_the_loopback_server(
    http_server: LoopbackServer, dialled: list[Any]
) -> None:
    url = http_server.add_bytes("/bird.png", BODY, "image/png")
    async with make_image_session(OPEN, 4) as session:
        assert await ImageFetcher(session, OPEN, 4).fetch(url) == BODY
    assert http_server.hits == {"/bird.png": 1}
    assert [address[0] for address in dialled] == ["127.0.0.1"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.1/bird.jpg",
        "http://192.168.1.1/bird.jpg",
        "http://172.16.0.1/bird.jpg",
        "http://100.64.0.1/bird.jpg",
        "http://0.0.0.0/bird.jpg",
        "http://[fd00::1]/bird.jpg",
        "http://[fe80::1%25eth0]/bird.jpg",
        "http://[::ffff:169.254.169.254]/bird.jpg",
        "http://[a:b.example.com]/bird.jpg",
        "file:///etc/passwd",
        "ftp://10.0.0.1/bird.jpg",
        "gopher://127.0.0.1:70/_",
        "data:image/png;base64,iVBORw0KGgo=",
        "http://user:secret@images.example.com/bird.jpg",
    ],
)
async def test_guarded_fetcher_refuses_without_any_connection_attempt(
    guarded: ImageFetcher, dialled: list[Any], url: str
) -> None:
    started = time.perf_counter()
    await expect_blocked(guarded, url)
    assert time.perf_counter() - started < 0.2
    assert dialled == []


class PretendPublicDNS(AbstractResolver):
    """`cdn.example` stands for a public CDN (dialled on loopback, unfiltered, as a real public
    host would be); every other name goes through the production guard over `FakeDNS`."""

    def __init__(self, fake: FakeDNS) -> None:
        self.guard = PublicOnlyResolver(fake)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host == "cdn.example":
            return [
                ResolveResult(
                    hostname=host,
                    host="127.0.0.1",
                    port=port,
                    family=socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]
        return await self.guard.resolve(host, port, family)

    async def close(self) -> None:
        await self.guard.close()


@pytest.fixture
async def via_cdn() -> AsyncIterator[tuple[ImageFetcher, FakeDNS]]:
    """A guarded fetcher whose first hop, `cdn.example`, counts as public."""
    fake = FakeDNS({"internal.example": ["127.0.0.1"], "metadata.example": ["169.254.169.254"]})
    connector = aiohttp.TCPConnector(resolver=PretendPublicDNS(fake), ttl_dns_cache=None)
    async with aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": USER_AGENT}
    ) as session:
        yield ImageFetcher(session, GUARDED, 4), fake


def redirecting_to(location: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": location})

    return handler


async def test_allowed_first_hop_is_fetched(
    http_server: LoopbackServer, via_cdn: tuple[ImageFetcher, FakeDNS]
) -> None:
    fetcher, _ = via_cdn
    port = URL(http_server.base).port
    http_server.add_bytes("/bird.png", BODY)
    http_server.add_handler("/start", redirecting_to(f"http://cdn.example:{port}/bird.png"))
    assert await fetcher.fetch(f"http://cdn.example:{port}/start") == BODY
    assert http_server.hits == {"/start": 1, "/bird.png": 1}


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/secret",
        "http://[::1]:{port}/secret",
        "http://127.1:{port}/secret",
        "http://internal.example:{port}/secret",
        "http://metadata.example/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
    ],
)
async def test_redirect_to_a_private_address_is_refused_at_the_hop(
    http_server: LoopbackServer,
    via_cdn: tuple[ImageFetcher, FakeDNS],
    dialled: list[Any],
    target: str,
) -> None:
    fetcher, _ = via_cdn
    port = URL(http_server.base).port
    http_server.add_bytes("/secret", b"internal data")
    http_server.add_handler("/start", redirecting_to(target.format(port=port)))
    await expect_blocked(fetcher, f"http://cdn.example:{port}/start")
    assert http_server.hits == {"/start": 1}
    assert dialled == [("127.0.0.1", port)]  # the first hop only


async def test_name_resolving_to_loopback_is_refused_by_the_resolver(
    http_server: LoopbackServer, via_cdn: tuple[ImageFetcher, FakeDNS], dialled: list[Any]
) -> None:
    fetcher, fake = via_cdn
    port = URL(http_server.base).port
    http_server.add_bytes("/secret", b"internal data")
    error = await expect_blocked(fetcher, f"http://internal.example:{port}/secret")
    assert "internal.example" in error.message
    assert fake.asked == ["internal.example"]
    assert http_server.hits == {}
    assert dialled == []
