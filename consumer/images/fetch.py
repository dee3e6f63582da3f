"""Fetching image bytes over HTTP: bounded, time-limited, size-capped, retried, SSRF-guarded."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import structlog
from yarl import URL

from consumer.images.errors import ImageError
from consumer.images.guard import BlockedAddressError, PublicOnlyResolver, check_url
from schemas import ErrorCode

log = structlog.get_logger(__name__)

USER_AGENT = "birdwatch/0.1 (+https://github.com/birdwatch; bird classifier)"
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one image download; `timeout_s` bounds each attempt."""

    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.2
    max_bytes: int = 20 * 1024 * 1024
    allow_private: bool = False


def make_image_session(policy: FetchPolicy, concurrency: int) -> aiohttp.ClientSession:
    """One shared session for user URLs; its resolver refuses non-public addresses."""
    connector = aiohttp.TCPConnector(
        limit=concurrency,
        resolver=None if policy.allow_private else PublicOnlyResolver(),
        ttl_dns_cache=60,
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": USER_AGENT, "Accept": "image/*"}
    )


class ImageFetcher:
    """Downloads image bytes with the limits of a `FetchPolicy`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: FetchPolicy,
        concurrency: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._policy = policy
        self._slots = asyncio.Semaphore(concurrency)
        self._sleep = sleep

    async def fetch(self, url: str) -> bytes:
        """The body at `url`, or `ImageError` with the code the result should carry."""
        try:
            target = URL(url, encoded=False)
        except ValueError as exc:
            raise ImageError(ErrorCode.BLOCKED_URL, f"malformed url: {exc}") from None
        async with self._slots:
            attempt = 0
            while True:
                try:
                    return await self._attempt(target)
                except _RetryableError as exc:
                    if attempt >= self._policy.retries:
                        raise exc.final from None
                    attempt += 1
                    delay = self._policy.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)  # noqa: S311
                    log.debug("fetch_retry", url=url, attempt=attempt, reason=exc.final.message)
                    await self._sleep(delay)

    async def _attempt(self, url: URL) -> bytes:
        timeout = aiohttp.ClientTimeout(
            total=self._policy.timeout_s, sock_connect=self._policy.connect_timeout_s
        )
        try:
            async with asyncio.timeout(self._policy.timeout_s):
                return await self._follow(url, timeout)
        except TimeoutError:
            raise _RetryableError(
                ImageError(
                    ErrorCode.TIMEOUT, f"no complete response within {self._policy.timeout_s:g} s"
                )
            ) from None

    async def _follow(self, url: URL, limits: aiohttp.ClientTimeout) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, self._policy.allow_private)
            try:
                async with self._session.get(url, allow_redirects=False, timeout=limits) as resp:
                    if resp.status in _REDIRECTS and "Location" in resp.headers:
                        url = url.join(URL(resp.headers["Location"]))
                        continue
                    if resp.status >= 500 or resp.status == 429:
                        raise _RetryableError(_status_error(resp.status))
                    if resp.status >= 400 or resp.status < 200:
                        raise _status_error(resp.status)
                    return await self._read_capped(resp)
            except (ImageError, _RetryableError, TimeoutError):
                raise
            except aiohttp.ClientConnectorError as exc:
                raise _connect_error(exc) from None
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
                raise _RetryableError(
                    ImageError(ErrorCode.FETCH_FAILED, f"connection broke: {exc}")
                ) from None
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                raise ImageError(ErrorCode.FETCH_FAILED, f"{type(exc).__name__}: {exc}") from None
        raise ImageError(ErrorCode.FETCH_FAILED, f"more than {MAX_REDIRECTS} redirects")

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self._policy.max_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise ImageError(
                ErrorCode.TOO_LARGE, f"Content-Length {resp.content_length} exceeds {limit} bytes"
            )
        body = bytearray()
        # Counting decompressed bytes bounds memory even for a gzip bomb via Content-Encoding.
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > limit:
                raise ImageError(ErrorCode.TOO_LARGE, f"body exceeds {limit} bytes")
        return bytes(body)


class _RetryableError(Exception):
    """A failure worth another attempt; `final` is what the caller sees if none succeeds."""

    def __init__(self, final: ImageError) -> None:
        super().__init__(final.message)
        self.final = final


def _status_error(status: int) -> ImageError:
    return ImageError(ErrorCode.HTTP_STATUS, f"HTTP {status}")


def _connect_error(exc: aiohttp.ClientConnectorError) -> ImageError | _RetryableError:
    cause: BaseException | None = exc.os_error
    while cause is not None:
        if isinstance(cause, BlockedAddressError):
            return ImageError(ErrorCode.BLOCKED_URL, str(cause))
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ImageError(ErrorCode.FETCH_FAILED, f"cannot resolve host: {exc.os_error}")
    return _RetryableError(ImageError(ErrorCode.FETCH_FAILED, f"cannot connect: {exc.os_error}"))
