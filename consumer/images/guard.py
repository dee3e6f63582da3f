"""SSRF guard for user-supplied image URLs.

Names are checked inside aiohttp's resolver, so the address that is checked is the address that
is dialled (no DNS-rebinding gap); IP literals, which aiohttp never resolves, are checked before
each request and each redirect hop.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from consumer.images.errors import ImageError
from schemas import ErrorCode

ALLOWED_SCHEMES = frozenset({"http", "https"})
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddressError(OSError):
    """Raised by the resolver when every address of a name is off limits."""


def is_public_address(addr: IPAddress) -> bool:
    """True when `addr` is a globally routable unicast address."""
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped or addr.sixtofour
        if mapped is not None:
            return is_public_address(mapped)
    return addr.is_global and not (
        addr.is_multicast or addr.is_reserved or addr.is_unspecified or addr.is_link_local
    )


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host names literally, if it is one (brackets of IPv6 stripped).

    Legacy IPv4 spellings the C library still accepts (`127.1`, `2130706433`, `0x7f000001`,
    `0177.0.0.1`, a trailing dot) are read as `inet_aton` reads them.
    """
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare.removesuffix(".")))
    except (OSError, ValueError):
        return None


def check_url(url: URL, allow_private: bool) -> None:
    """Refuse URLs we must never fetch for a user: wrong scheme, credentials, private literals."""
    if url.scheme not in ALLOWED_SCHEMES:
        raise ImageError(ErrorCode.BLOCKED_URL, f"scheme {url.scheme!r} is not allowed")
    try:
        host = url.host  # decoded lazily: a bad punycode label ("xn--a") raises here
    except UnicodeError:
        raise ImageError(ErrorCode.BLOCKED_URL, f"host {url.raw_host!r} is not valid") from None
    if not host:
        raise ImageError(ErrorCode.BLOCKED_URL, "url has no host")
    if url.user is not None or url.password is not None:
        raise ImageError(ErrorCode.BLOCKED_URL, "credentials in urls are not allowed")
    if allow_private:
        return
    literal = parse_ip_literal(host)
    if literal is None and ":" in host:
        # aiohttp dials any host with a colon as an address, so our resolver never sees it.
        raise ImageError(ErrorCode.BLOCKED_URL, f"host {host!r} is not a valid address")
    if literal is not None and not is_public_address(literal):
        raise ImageError(ErrorCode.BLOCKED_URL, f"address {literal} is not public")


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops every non-public address."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if _public_result(r)]
        if not allowed:
            raise BlockedAddressError(f"{host} resolves only to non-public addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _public_result(result: dict[str, Any] | ResolveResult) -> bool:
    addr = parse_ip_literal(str(result["host"]))
    return addr is not None and is_public_address(addr)
