"""Helpers of the SSRF-guard tests: fetch policies with and without the guard, and a fake
DNS (names are never really resolved here)."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from consumer.images import FetchPolicy, ImageError, ImageFetcher
from schemas import ErrorCode

BODY = b"\x89PNG\r\n\x1a\n pretend png"

GUARDED = FetchPolicy(timeout_s=2.0, connect_timeout_s=1.0, retries=0, allow_private=False)

OPEN = FetchPolicy(timeout_s=2.0, connect_timeout_s=1.0, retries=0, allow_private=True)


async def expect_blocked(fetcher: ImageFetcher, url: str) -> ImageError:
    with pytest.raises(ImageError) as info:
        await fetcher.fetch(url)
    assert info.value.code is ErrorCode.BLOCKED_URL, info.value.message
    return info.value


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
