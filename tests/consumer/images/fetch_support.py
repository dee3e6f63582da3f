"""Helpers of the `ImageFetcher` tests: a fetcher on a real session with the retries it
logged, and loopback handlers that answer in sequence, redirect, linger or hang up."""

from __future__ import annotations

import asyncio
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
from schemas import ErrorCode

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


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


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
