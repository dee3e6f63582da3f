"""Bounded waits and loopback ports, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout_s: float, what: str, step: float = 0.1
) -> float:
    """Poll `condition` until true; returns the seconds it took, TimeoutError naming `what`."""
    start = time.monotonic()
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(step)


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
