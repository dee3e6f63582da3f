"""Fetching the model online into a cache keyed by URL.

Accepts a TF Hub handle (tfhub.dev redirects to Kaggle) or a direct URL of anything a backend
recognises (`.tflite` file, `.tar.gz` SavedModel archive): what was served decides which backend
loads it, not the name (`consumer/model/served.py`). Entries appear in the
cache by an atomic rename, so concurrent processes never see half a model. A cache that cannot
be written (read-only, full) is a one-line `ModelError`, or, when asked, a warning and a
temporary folder instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import structlog
from yarl import URL

from consumer.model.backends import BUILTIN_BACKENDS
from consumer.model.backends.litert import likely_tflite
from consumer.model.errors import ModelError
from consumer.model.labels import parse_labels
from consumer.model.progress import PROGRESS_INTERVAL_S, DownloadProgress, reported
from consumer.model.registry import Backends
from consumer.model.store import (
    CacheWriteError,
    cache_key,
    publish,
    read_entry,
    unpack,
    write_meta,
    writes_to,
)

log = structlog.get_logger(__name__)

TFHUB_HOSTS = frozenset({"tfhub.dev", "www.tfhub.dev"})
_CHUNK = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class ModelArtifact:
    """A model on local disk, ready for the backend of its `kind` to load."""

    url: str
    kind: str
    path: Path
    size_bytes: int
    from_cache: bool
    fetch_s: float


def download_url(handle: str) -> str:
    """The URL that serves the bytes of `handle`: TF Hub handles get their format parameter."""
    url = URL(handle)
    if url.host not in TFHUB_HOSTS or "tf-hub-format" in url.query or "lite-format" in url.query:
        return handle
    if "/lite-model/" in url.path:
        return str(url.update_query({"lite-format": "tflite"}))
    return str(url.update_query({"tf-hub-format": "compressed"}))


class ModelFetcher:
    """Downloads models and label maps with a trusted session, caching them by URL.

    With `temporary_fallback`, a cache folder that cannot be written is replaced (once, with a
    warning) by a temporary folder removed by `close()`; without, it is a `ModelError`.
    Downloads log their progress every `progress_interval_s`. What was served is loaded by
    the first of `backends` that recognises it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        cache_dir: Path | None,
        progress: bool = False,
        *,
        temporary_fallback: bool = False,
        progress_interval_s: float = PROGRESS_INTERVAL_S,
        backends: Backends = BUILTIN_BACKENDS,
    ) -> None:
        self._session = session
        self._backends = backends
        self._progress = progress
        self._progress_interval_s = progress_interval_s
        self._fallback = temporary_fallback
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if cache_dir is None:
            # No cache: everything lives in a private folder removed by close().
            self._tmp = tempfile.TemporaryDirectory(prefix="birdwatch-model-")
            cache_dir = Path(self._tmp.name)
        self._cache_dir = cache_dir

    @property
    def backends(self) -> Backends:
        """The backends asked to recognise what was served."""
        return self._backends

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    async def fetch_model(self, handle: str) -> ModelArtifact:
        """Return the model of `handle` from the cache, downloading it on a miss."""
        return await self._writing(lambda: self._fetch_model(handle))

    async def fetch_labels(self, url: str) -> bytes:
        """The label map's bytes, from the cache when present."""
        return await self._writing(lambda: self._fetch_labels(url))

    async def _writing(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation`, once more in a temporary folder if the cache cannot be written."""
        try:
            return await operation()
        except CacheWriteError as exc:
            self._fall_back(exc)
        try:
            return await operation()
        except CacheWriteError as exc:
            raise ModelError(f"cannot write the temporary model folder {exc}") from None

    def _fall_back(self, failed: CacheWriteError) -> None:
        if failed.folder != self._cache_dir:
            return  # the other download switched folders meanwhile
        if not self._fallback or self._tmp is not None:
            raise ModelError(
                f"cannot write the model cache {failed} (set BIRDWATCH_MODEL_CACHE_DIR to a "
                "writable folder, or to empty for no cache)"
            )
        self._tmp = tempfile.TemporaryDirectory(prefix="birdwatch-model-")
        self._cache_dir = Path(self._tmp.name)
        log.warning(
            "model_cache_unwritable",
            cache_dir=str(failed.folder),
            error=str(failed),
            using=self._cache_dir.as_posix(),
            hint="the model is downloaded again next time; set BIRDWATCH_MODEL_CACHE_DIR "
            "to a writable folder to keep it",
        )

    async def _fetch_model(self, handle: str) -> ModelArtifact:
        start = time.perf_counter()
        folder = self._cache_dir
        entry = folder / cache_key(handle)
        found = read_entry(entry, self._backends)
        if found is not None:
            kind, path, size = found
            log.info("model_cache_hit", url=handle, kind=kind, path=str(path), bytes=size)
            return ModelArtifact(handle, kind, path, size, True, time.perf_counter() - start)

        with writes_to(folder):
            folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        try:
            url = download_url(handle)
            blob = staging / "download"
            size = await self._download(url, blob, folder)
            backend = await asyncio.to_thread(unpack, blob, staging, folder, self._backends)
            with writes_to(folder):
                write_meta(staging, handle, backend.kind, size)
                publish(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        found = read_entry(entry, self._backends)
        if found is None:  # pragma: no cover - only if someone removes the entry under us
            raise ModelError(f"model cache entry {entry} vanished")
        kind, path, size = found
        elapsed = time.perf_counter() - start
        log.info(
            "model_fetched",
            url=handle,
            kind=kind,
            bytes=size,
            seconds=round(elapsed, 3),
            cache_enabled=self._tmp is None,
        )
        return ModelArtifact(handle, kind, path, size, False, elapsed)

    async def _fetch_labels(self, url: str) -> bytes:
        folder = self._cache_dir
        path = folder / f"{cache_key(url)}.labels"
        if path.exists():
            return path.read_bytes()
        start = time.perf_counter()
        data = await self._get_bytes(url)
        parse_labels(data)  # never cache a map we cannot read (an HTML error page, say)
        with writes_to(folder):
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        log.info(
            "labels_fetched",
            url=url,
            bytes=len(data),
            seconds=round(time.perf_counter() - start, 3),
        )
        return data

    async def _get_bytes(self, url: str) -> bytes:
        try:
            async with self._session.get(url) as resp:
                _check_status(url, resp.status)
                return await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ModelError(f"GET {url} failed: {_describe(exc)}", retryable=True) from None

    async def _download(self, url: str, target: Path, folder: Path) -> int:
        try:
            async with self._session.get(url) as resp:
                _check_status(url, resp.status)
                progress = DownloadProgress(url, resp.content_length, bar=self._progress)
                with writes_to(folder):
                    out = target.open("wb")
                try:
                    async with reported(progress, self._progress_interval_s):
                        async for chunk in resp.content.iter_chunked(_CHUNK):
                            with writes_to(folder):
                                out.write(chunk)
                            progress.add(len(chunk))
                finally:
                    with writes_to(folder):
                        out.close()
                return progress.done
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ModelError(f"GET {url} failed: {_describe(exc)}", retryable=True) from None


def _check_status(url: str, status: int) -> None:
    if status != 200:
        retryable = status >= 500 or status in (408, 429)
        raise ModelError(f"GET {url} answered HTTP {status}", retryable=retryable)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# likely_tflite: tests/deploy (the deployment branch's files) import the LiteRT URL guess here.
__all__ = [
    "CacheWriteError",
    "ModelArtifact",
    "ModelFetcher",
    "cache_key",
    "download_url",
    "likely_tflite",
]
