"""`PublicOnlyResolver`: a name's private answers are dropped, a name with only private
answers is refused. Names are answered by a fake DNS, never really resolved."""

from __future__ import annotations

import socket

import pytest

from consumer.images.guard import (
    BlockedAddressError,
    PublicOnlyResolver,
)
from tests.consumer.images.guard_support import FakeDNS

# Nothing may dial anything but loopback (see the `dialled` fixture).
pytestmark = pytest.mark.usefixtures("dialled")


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
