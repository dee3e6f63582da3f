"""SSRF guard: address classes, URL checks, the filtering resolver, and the fetcher using them.

Nothing here may leave the machine: the `dialled` fixture, which every test uses, fails any
test that dials a non-loopback address, and names are only ever "resolved" by fake resolvers or
to loopback.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from consumer.images import FetchPolicy, ImageError, ImageFetcher, make_image_session
from consumer.images.fetch import USER_AGENT
from consumer.images.guard import (
    BlockedAddressError,
    PublicOnlyResolver,
    check_url,
    is_public_address,
    parse_ip_literal,
)
from schemas import ErrorCode
from tests.conftest import LoopbackServer

# Nothing may dial anything but loopback (see the `dialled` fixture).
pytestmark = pytest.mark.usefixtures("dialled")

BODY = b"\x89PNG\r\n\x1a\n pretend png"
GUARDED = FetchPolicy(timeout_s=2.0, connect_timeout_s=1.0, retries=0, allow_private=False)
OPEN = FetchPolicy(timeout_s=2.0, connect_timeout_s=1.0, retries=0, allow_private=True)


async def expect_blocked(fetcher: ImageFetcher, url: str) -> ImageError:
    with pytest.raises(ImageError) as info:
        await fetcher.fetch(url)
    assert info.value.code is ErrorCode.BLOCKED_URL, info.value.message
    return info.value


@pytest.fixture
async def guarded() -> AsyncIterator[ImageFetcher]:
    """The production wiring with the guard on: `make_image_session` + `allow_private=False`."""
    async with make_image_session(GUARDED, 4) as session:
        yield ImageFetcher(session, GUARDED, 4)


# --- address classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        # public unicast
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("1.1.1.1", True),
        ("100.63.255.255", True),  # just below the carrier-grade NAT range
        ("100.128.0.0", True),  # just above it
        ("2606:4700:4700::1111", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:8.8.8.8", True),  # IPv4-mapped public address
        ("2002:5db8:d822::1", True),  # 6to4 of 93.184.216.34
        # loopback, private, link-local
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("172.31.255.255", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT 100.64/10
        ("100.127.255.255", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd00::2", False),
        # unspecified, broadcast, multicast, reserved, documentation, benchmarking
        ("0.0.0.0", False),
        ("::", False),
        ("255.255.255.255", False),
        ("224.0.0.1", False),
        ("224.0.1.1", False),  # globally scoped multicast is still not unicast
        ("239.255.255.250", False),
        ("ff02::1", False),
        ("ff0e::1", False),  # global-scope IPv6 multicast
        ("240.0.0.1", False),
        ("192.0.2.1", False),
        ("198.18.0.1", False),
        ("2001:db8::1", False),
        ("100::1", False),  # discard-only
        # IPv4 hidden inside IPv6
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::127.0.0.1", False),  # deprecated IPv4-compatible form
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2001::1", False),  # Teredo
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("93.184.216.34", "93.184.216.34"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("fe80::1%eth0", "fe80::1"),  # zone id dropped
        ("[fe80::1%25eth0]", "fe80::1"),
        ("2002:7f00:1::", "2002:7f00:1::"),
        # legacy IPv4 spellings that the C library still dials
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.000.000.001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("8.8", "8.0.0.8"),
        # not addresses
        ("example.com", None),
        ("localhost", None),
        ("", None),
        ("[]", None),
        ("999.1.1.1", None),
        ("1.2.3.4.5", None),
        ("0x", None),
        ("::ffff:zz", None),
        ("1e3", None),
        ("bird-pictures.example", None),
    ],
)
def test_parse_ip_literal(host: str, expected: str | None) -> None:
    parsed = parse_ip_literal(host)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == ipaddress.ip_address(expected)


# --- check_url ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://images.example.com/bird.jpg",
        "http://93.184.216.34/bird.jpg",
        "http://[2606:4700:4700::1111]:8080/bird.jpg",
        "HTTP://Images.Example.COM/bird.jpg",
        "http://8.8/",
    ],
)
def test_check_url_allows_public_http(url: str) -> None:
    check_url(URL(url), allow_private=False)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme"),
        ("ftp://images.example.com/bird.jpg", "scheme"),
        ("gopher://images.example.com:70/_GET", "scheme"),
        ("data:image/png;base64,iVBORw0KGgo=", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("ws://images.example.com/", "scheme"),
        ("//images.example.com/bird.jpg", "scheme"),
        ("/bird.jpg", "scheme"),
        ("http:///bird.jpg", "no host"),
        ("http://user:secret@images.example.com/bird.jpg", "credentials"),
        ("http://user@images.example.com/bird.jpg", "credentials"),
        ("http://:secret@images.example.com/bird.jpg", "credentials"),
        ("http://images.example.com@127.0.0.1/", "credentials"),
        ("http://xn--a/bird.jpg", "not valid"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_check_url_refuses_whatever_the_network_policy(
    url: str, reason: str, allow_private: bool
) -> None:
    with pytest.raises(ImageError) as info:
        check_url(URL(url), allow_private)
    assert info.value.code is ErrorCode.BLOCKED_URL
    assert reason in info.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://127.0.0.1./",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[fe80::1%25eth0]/",
        "http://[zz::1]/",  # not an address, yet aiohttp would dial it as one
        "http://[a:b.example.com]/",
    ],
)
def test_check_url_refuses_non_public_literals_only_when_guarded(url: str) -> None:
    with pytest.raises(ImageError) as info:
        check_url(URL(url), allow_private=False)
    assert info.value.code is ErrorCode.BLOCKED_URL
    check_url(URL(url), allow_private=True)


def test_each_redirect_hop_is_checked_on_its_own() -> None:
    first = URL("https://images.example.com/bird.jpg")
    check_url(first, allow_private=False)
    for location in ("http://169.254.169.254/", "http://[::1]:8080/x", "file:///etc/passwd"):
        with pytest.raises(ImageError) as info:
            check_url(first.join(URL(location)), allow_private=False)
        assert info.value.code is ErrorCode.BLOCKED_URL
    check_url(first.join(URL("/other/bird.jpg")), allow_private=False)


# --- the resolver ------------------------------------------------------------------------------


class FakeDNS(AbstractResolver):
    """A stand-in for DNS: fixed answers, no packets."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_passes_public_answers_through() -> None:
    inner = FakeDNS({"birds.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    results = await PublicOnlyResolver(inner).resolve("birds.example", 443)
    assert [r["host"] for r in results] == ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    assert all(r["port"] == 443 for r in results)


async def test_resolver_drops_private_answers_among_public_ones() -> None:
    inner = FakeDNS({"mixed.example": ["10.0.0.5", "93.184.216.34", "::1", "fe80::1"]})
    results = await PublicOnlyResolver(inner).resolve("mixed.example", 80)
    assert [r["host"] for r in results] == ["93.184.216.34"]


@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["10.0.0.1", "192.168.0.1"],
        ["::1", "::ffff:127.0.0.1"],
        ["fe80::1%eth0"],
        ["not-an-address"],
    ],
)
async def test_resolver_refuses_names_with_only_private_answers(answers: list[str]) -> None:
    inner = FakeDNS({"rebind.example": answers})
    with pytest.raises(BlockedAddressError, match=r"rebind\.example"):
        await PublicOnlyResolver(inner).resolve("rebind.example", 80)


async def test_resolver_passes_lookup_failures_on() -> None:
    with pytest.raises(socket.gaierror):
        await PublicOnlyResolver(FakeDNS({})).resolve("nonexistent.invalid", 80)


async def test_resolver_closes_its_inner_resolver() -> None:
    inner = FakeDNS({})
    await PublicOnlyResolver(inner).close()
    assert inner.closed


async def test_default_inner_resolver_refuses_localhost() -> None:
    resolver = PublicOnlyResolver()
    try:
        with pytest.raises(BlockedAddressError):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


# --- the fetcher, guarded, against the real loopback server ------------------------------------


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
