"""Fetching the model online into a cache keyed by the model setting.

Accepts every form the model is published in (`consumer/model/sources.py`): TF Hub and Kaggle
handles, Kaggle model pages and direct URLs. What was served decides which backend loads it,
not the name (`consumer/model/served.py`). Entries appear in the cache by an atomic rename, so
concurrent processes never see half a model; each records the sha256 of its download and of
its files, checked on reuse. A cache that cannot be written (read-only, full) is a one-line
`ModelError`, or, when asked, a warning and a temporary folder instead.
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

from consumer.model.backends import BUILTIN_BACKENDS
from consumer.model.backends.litert import likely_tflite
from consumer.model.download import download_source, get_bytes
from consumer.model.errors import ModelError
from consumer.model.labels import parse_labels
from consumer.model.progress import PROGRESS_INTERVAL_S
from consumer.model.registry import Backends
from consumer.model.sources import KAGGLE_URL, resolve_source, tfhub_download_url
from consumer.model.store import (
    CacheEntry,
    CacheWriteError,
    cache_key,
    discard,
    entry_digest,
    publish,
    read_entry,
    unpack,
    write_meta,
    writes_to,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
# The name older callers (and tests) use for the TF Hub format parameter.
download_url = tfhub_download_url


@dataclass(frozen=True)
class ModelArtifact:
    """A model on local disk, ready for the backend of its `kind` to load; `sha256` is that of
    its download (empty when unknown)."""

    url: str
    kind: str
    path: Path
    size_bytes: int
    from_cache: bool
    fetch_s: float
    sha256: str = ""


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
        kaggle_url: str = KAGGLE_URL,
    ) -> None:
        self._session = session
        self._kaggle_url = kaggle_url
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

    async def fetch_model(self, handle: str, sha256: str | None = None) -> ModelArtifact:
        """Return the model of `handle` from the cache, downloading it on a miss. With
        `sha256`, a download (or cached copy) of another digest is refused (`ModelError`)."""
        return await self._writing(lambda: self._fetch_model(handle, sha256))

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

    async def _fetch_model(self, handle: str, pin: str | None) -> ModelArtifact:
        start = time.perf_counter()
        source = resolve_source(handle, self._kaggle_url)
        folder = self._cache_dir
        entry = folder / cache_key(handle)
        found, refused = await self._reusable(handle, entry, pin)
        if found is not None:
            log.info(
                "model_cache_hit",
                url=handle,
                kind=found.kind,
                path=str(found.path),
                bytes=found.size,
                sha256=found.sha256,
            )
            return ModelArtifact(
                handle,
                found.kind,
                found.path,
                found.size,
                True,
                time.perf_counter() - start,
                found.sha256 or "",
            )

        with writes_to(folder):
            folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        try:
            blob = staging / "download"
            got = await download_source(
                self._session,
                source,
                blob,
                folder,
                bar=self._progress,
                interval_s=self._progress_interval_s,
            )
            if pin is not None and got.sha256 != pin:
                raise ModelError(
                    f"model {handle} has sha256 {got.sha256}, but BIRDWATCH_MODEL_SHA256 is "
                    f"{pin}: refused"
                )
            backend = await asyncio.to_thread(unpack, blob, staging, folder, self._backends)
            kept = await asyncio.to_thread(entry_digest, staging / backend.entry_name)
            with writes_to(folder):
                write_meta(staging, handle, backend.kind, got.size, got.sha256, kept)
                if refused:  # this download replaces it; an entry another process just
                    discard(entry)  # published is left alone (publish keeps the first)
                publish(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        elapsed = time.perf_counter() - start
        log.info(
            "model_fetched",
            url=handle,
            served_by=got.url,
            kind=backend.kind,
            bytes=got.size,
            sha256=got.sha256,
            seconds=round(elapsed, 3),
            cache_enabled=self._tmp is None,
        )
        path = entry / backend.entry_name
        return ModelArtifact(handle, backend.kind, path, got.size, False, elapsed, got.sha256)

    async def _reusable(
        self, handle: str, entry: Path, pin: str | None
    ) -> tuple[CacheEntry | None, bool]:
        """The cached model of `handle` when there is one fit to use, and whether one was
        refused. An unfit one (another digest than the pin, files changed since download) is
        ignored with a warning, and replaced only once a download passes (a mistyped pin does
        not cost the cache)."""
        found = read_entry(entry, self._backends)
        if found is None:
            return None, False
        if pin is not None and found.sha256 != pin:
            reason = f"its download had sha256 {found.sha256}, BIRDWATCH_MODEL_SHA256 is {pin}"
        elif found.entry_sha256 is None:
            reason = "it records no digest (cached by an older version)"
        elif (now := await asyncio.to_thread(entry_digest, found.path)) != found.entry_sha256:
            reason = f"its files changed on disk (sha256 {now}, {found.entry_sha256} when cached)"
        else:
            return found, False
        log.warning("model_cache_refused", url=handle, path=str(entry), reason=reason)
        return None, True

    async def _fetch_labels(self, url: str) -> bytes:
        folder = self._cache_dir
        path = folder / f"{cache_key(url)}.labels"
        if path.exists():
            return path.read_bytes()
        start = time.perf_counter()
        data = await get_bytes(self._session, url)
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


# likely_tflite: tests/deploy (the deployment branch's files) import the LiteRT URL guess here.
__all__ = [
    "CacheWriteError",
    "ModelArtifact",
    "ModelFetcher",
    "cache_key",
    "download_url",
    "likely_tflite",
]
