"""Fetching image bytes over HTTP: fair per host, time-limited, capped, retried, SSRF-guarded."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

import aiohttp
import stamina
import structlog
from yarl import URL

from consumer.images.errors import ImageError
from consumer.images.guard import BlockedAddressError, PublicOnlyResolver, check_url
from consumer.images.slots import HostSlots, host_key
from schemas import ErrorCode

log = structlog.get_logger(__name__)

USER_AGENT = "birdwatch/0.1 (+https://github.com/birdwatch; bird classifier)"
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one image download: `timeout_s` bounds each attempt, `deadline_s` the whole
    download (attempts, redirects and the waits between attempts)."""

    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.2
    backoff_max_s: float = 5.0
    deadline_s: float = 20.0
    max_bytes: int = 20 * 1024 * 1024
    allow_private: bool = False


def make_image_session(policy: FetchPolicy, concurrency: int) -> aiohttp.ClientSession:
    """One shared session for user URLs; its resolver refuses non-public addresses.

    The per-host bound is the fetcher's (`HostSlots`), not the connector's `limit_per_host`:
    a redirect to another host must not wait for a connection while holding a slot.
    """
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
    """Downloads image bytes with the limits of a `FetchPolicy`.

    At most `concurrency` downloads run at once, at most `per_host` of them (default: all) for
    one host (`host_key`), so a host that hangs holds only its share of the slots.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: FetchPolicy,
        concurrency: int,
        per_host: int | None = None,
    ) -> None:
        self._session = session
        self._policy = policy
        self.slots = HostSlots(concurrency, per_host)
        # The one retry policy of image downloads (stamina.set_testing removes its waits).
        self._retrying = functools.partial(
            stamina.retry_context,
            on=_RetryableError,
            attempts=policy.retries + 1,
            timeout=policy.deadline_s,
            wait_initial=policy.backoff_s,
            wait_jitter=policy.backoff_s,
            wait_max=max(policy.backoff_max_s, policy.backoff_s),
            wait_exp_base=2,
        )

    async def fetch(self, url: str) -> bytes:
        """The body at `url`, or `ImageError` with the code the result should carry."""
        try:
            target = URL(url, encoded=False)
        except ValueError as exc:
            raise ImageError(ErrorCode.BLOCKED_URL, f"malformed url: {exc}") from None
        async with self.slots.hold(host_key(target)):
            last: list[str] = []
            try:
                async with asyncio.timeout(self._policy.deadline_s):
                    return await self._with_retries(url, target, last)
            except _RetryableError as exc:
                raise exc.final from None
            except TimeoutError:
                tried = f"; last failure: {last[-1]}" if last else ""
                raise ImageError(
                    ErrorCode.TIMEOUT,
                    f"no complete response within the {self._policy.deadline_s:g} s "
                    f"deadline of a download{tried}",
                ) from None

    async def _with_retries(self, url: str, target: URL, failures: list[str]) -> bytes:
        async for attempt in self._retrying():
            with attempt:
                if failures:
                    log.debug("fetch_retry", url=url, attempt=attempt.num, reason=failures[-1])
                try:
                    return await self._attempt(target)
                except _RetryableError as exc:
                    failures.append(exc.final.message)
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

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
