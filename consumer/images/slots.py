"""Download slots shared fairly between hosts: one slow host cannot hold them all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from yarl import URL


def host_key(url: str | URL) -> str:
    """What counts as one host for fairness: the URL's host name, without the port.

    Ports of one name are one server as far as its capacity goes (and keying on host:port would
    let a single host take many shares by spreading its URLs over ports). A name that cannot
    be read shares the key "" with all such names; those URLs fail early anyway.
    """
    try:
        parsed = url if isinstance(url, URL) else URL(url, encoded=False)
        return (parsed.host or "").lower()
    except (ValueError, UnicodeError):
        return ""


@dataclass
class _Host:
    gate: asyncio.Semaphore
    users: int = 0


class HostSlots:
    """At most `total` holders at once, and at most `per_host` of them for any one host.

    A task first waits for its host's share, then for a shared slot, so a task held back by
    its host's limit never occupies a shared slot another host could use.
    """

    def __init__(self, total: int, per_host: int | None = None) -> None:
        self.total = total
        self.per_host = min(per_host or total, total)
        self._shared = asyncio.Semaphore(total)
        self._hosts: dict[str, _Host] = {}

    def holding(self, host: str) -> int:
        """Tasks of `host` holding or waiting for a slot (0 for an unknown host)."""
        entry = self._hosts.get(host)
        return entry.users if entry else 0

    @asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        entry = self._hosts.get(host)
        if entry is None:
            entry = self._hosts[host] = _Host(asyncio.Semaphore(self.per_host))
        entry.users += 1
        try:
            async with entry.gate, self._shared:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._hosts[host]  # one entry per host in use, not per host ever seen
