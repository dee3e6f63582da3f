"""Fixtures of the image tests."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest


@pytest.fixture
async def dialled(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a socket connects to; anything off loopback (127.0.0.0/8, ::1) fails the
    test undialled.

    The fetch and guard tests use it for every test (`pytest.mark.usefixtures`), so nothing
    they do can leave the machine."""
    loop = asyncio.get_running_loop()
    seen: list[Any] = []
    real_connect = loop.sock_connect

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        seen.append(address)
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"test tried to dial {address}")
        await real_connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return seen
