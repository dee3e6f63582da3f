"""Downloading a model's bytes: the model session, redirects passed on as sent, the fallbacks
of a source, progress, and the sha256 of what was received."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog
from yarl import URL

from consumer.model.errors import ModelError
from consumer.model.progress import PROGRESS_INTERVAL_S, DownloadProgress, reported
from consumer.model.sources import ModelSource
from consumer.model.store import writes_to

log = structlog.get_logger(__name__)

MODEL_USER_AGENT = "birdwatch/0.1 (model fetch)"
_CHUNK = 1024 * 1024


def make_model_session(connector: aiohttp.BaseConnector | None = None) -> aiohttp.ClientSession:
    """The session models and label maps are fetched with.

    Redirects are followed with their URL exactly as the server sent it: re-quoting (aiohttp's
    default) turns `%2F` and `%40` of a signed storage URL's query into `/` and `@`, which
    breaks its signature.
    """
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": MODEL_USER_AGENT},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60),
        requote_redirect_url=False,
    )


@dataclass(frozen=True)
class Downloaded:
    """A finished download: where from (after redirects and fallbacks, without its query),
    its size and sha256."""

    url: str
    size: int
    sha256: str


async def download_source(
    session: aiohttp.ClientSession,
    source: ModelSource,
    target: Path,
    folder: Path,
    *,
    bar: bool,
    interval_s: float = PROGRESS_INTERVAL_S,
) -> Downloaded:
    """Download `source` into `target` (inside the cache `folder`), trying its fallbacks in
    turn when a URL answers HTTP 5xx; raises `ModelError` with the last failure."""
    urls = (source.url, *source.fallbacks)
    for index, url in enumerate(urls):
        try:
            return await download(session, url, target, folder, bar=bar, interval_s=interval_s)
        except ModelError as exc:
            if exc.status is None or exc.status < 500 or index + 1 == len(urls):
                raise
            log.warning(
                "model_source_fallback",
                handle=source.handle,
                failed_url=url,
                status=exc.status,
                next_url=urls[index + 1],
            )
    raise AssertionError("unreachable: the last URL returns or raises")  # pragma: no cover


async def download(
    session: aiohttp.ClientSession,
    url: str,
    target: Path,
    folder: Path,
    *,
    bar: bool,
    interval_s: float = PROGRESS_INTERVAL_S,
) -> Downloaded:
    """Stream `url` into `target`, hashing as it arrives."""
    digest = hashlib.sha256()
    try:
        # encoded=True: the URL goes out exactly as configured (a signed URL stays valid).
        async with session.get(URL(url, encoded=True)) as resp:
            check_status(url, resp.status)
            progress = DownloadProgress(url, resp.content_length, bar=bar)
            with writes_to(folder):
                out = target.open("wb")
            try:
                async with reported(progress, interval_s):
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        digest.update(chunk)
                        with writes_to(folder):
                            out.write(chunk)
                        progress.add(len(chunk))
            finally:
                with writes_to(folder):
                    out.close()
            # Where it came from, without the query: a signed URL's signature stays out of logs.
            served_by = str(resp.url.with_query(None).with_fragment(None))
            return Downloaded(served_by, progress.done, digest.hexdigest())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ModelError(f"GET {url} failed: {describe(exc)}", retryable=True) from None


async def get_bytes(session: aiohttp.ClientSession, url: str) -> bytes:
    """The whole body of `url` (a label map)."""
    try:
        async with session.get(URL(url, encoded=True)) as resp:
            check_status(url, resp.status)
            return await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ModelError(f"GET {url} failed: {describe(exc)}", retryable=True) from None


def check_status(url: str, status: int) -> None:
    if status != 200:
        retryable = status >= 500 or status in (408, 429)
        raise ModelError(f"GET {url} answered HTTP {status}", retryable=retryable, status=status)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
