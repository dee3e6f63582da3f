"""Fetching the model online into a cache keyed by URL.

Accepts a TF Hub handle (tfhub.dev redirects to Kaggle), a direct `.tar.gz` SavedModel archive or
a direct `.tflite` file. What was served decides the kind, not the name. Entries appear in the
cache by an atomic rename, so concurrent processes never see half a model.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
import orjson
import structlog
from yarl import URL

from consumer.model.errors import ModelError
from consumer.model.labels import parse_labels

log = structlog.get_logger(__name__)

ModelKind = Literal["tflite", "savedmodel"]
TFHUB_HOSTS = frozenset({"tfhub.dev", "www.tfhub.dev"})
_CHUNK = 1024 * 1024
_TFLITE_FILE = "model.tflite"
_SAVEDMODEL_DIR = "saved_model"
_META_FILE = "source.json"


@dataclass(frozen=True)
class ModelArtifact:
    """A model on local disk, ready for a backend to load."""

    url: str
    kind: ModelKind
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


def likely_tflite(handle: str) -> bool:
    """A guess from the URL alone, used only to start importing TensorFlow early."""
    url = URL(handle)
    return url.path.endswith(".tflite") or "/lite-model/" in url.path or "lite-format" in url.query


def sniff_kind(head: bytes) -> Literal["tflite", "targz", "tar"]:
    """What a download holds, from its first bytes (at least 262 of them for plain tar)."""
    if head[4:8] == b"TFL3":
        return "tflite"
    if head[:2] == b"\x1f\x8b":
        return "targz"
    if head[257:262] == b"ustar":
        return "tar"
    raise ModelError(
        "served content is neither a TFLite flatbuffer nor a SavedModel archive "
        f"(starts {head[:8]!r})"
    )


def cache_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


class ModelFetcher:
    """Downloads models and label maps with a trusted session, caching them by URL."""

    def __init__(
        self, session: aiohttp.ClientSession, cache_dir: Path | None, progress: bool = False
    ) -> None:
        self._session = session
        self._progress = progress
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if cache_dir is None:
            # No cache: everything lives in a private folder removed by close().
            self._tmp = tempfile.TemporaryDirectory(prefix="birdwatch-model-")
            cache_dir = Path(self._tmp.name)
        self._cache_dir = cache_dir

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    async def fetch_model(self, handle: str) -> ModelArtifact:
        """Return the model of `handle` from the cache, downloading it on a miss."""
        start = time.perf_counter()
        entry = self._cache_dir / cache_key(handle)
        found = _read_entry(entry)
        if found is not None:
            kind, path, size = found
            log.info("model_cache_hit", url=handle, kind=kind, path=str(path), bytes=size)
            return ModelArtifact(handle, kind, path, size, True, time.perf_counter() - start)

        self._cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self._cache_dir))
        try:
            url = download_url(handle)
            blob = staging / "download"
            size = await self._download(url, blob)
            kind = await asyncio.to_thread(_unpack, blob, staging)
            (staging / _META_FILE).write_bytes(
                orjson.dumps({"url": handle, "kind": kind, "bytes": size})
            )
            _publish(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        found = _read_entry(entry)
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

    async def fetch_labels(self, url: str) -> bytes:
        """The label map's bytes, from the cache when present."""
        path = self._cache_dir / f"{cache_key(url)}.labels"
        if path.exists():
            return path.read_bytes()
        start = time.perf_counter()
        data = await self._get_bytes(url)
        parse_labels(data)  # never cache a map we cannot read (an HTML error page, say)
        self._cache_dir.mkdir(parents=True, exist_ok=True)
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

    async def _download(self, url: str, target: Path) -> int:
        try:
            async with self._session.get(url) as resp:
                _check_status(url, resp.status)
                total = resp.content_length
                done = 0
                with target.open("wb") as out:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        if self._progress:
                            _show_progress(done, total)
                if self._progress:
                    sys.stderr.write("\n")
                return done
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ModelError(f"GET {url} failed: {_describe(exc)}", retryable=True) from None


def _check_status(url: str, status: int) -> None:
    if status != 200:
        retryable = status >= 500 or status in (408, 429)
        raise ModelError(f"GET {url} answered HTTP {status}", retryable=retryable)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _show_progress(done: int, total: int | None) -> None:
    mib = done / 2**20
    of = f" / {total / 2**20:.1f}" if total else ""
    sys.stderr.write(f"\rdownloading model: {mib:.1f}{of} MiB")
    sys.stderr.flush()


def _unpack(blob: Path, staging: Path) -> ModelKind:
    with blob.open("rb") as f:
        head = f.read(512)
    kind = sniff_kind(head)
    if kind == "tflite":
        blob.rename(staging / _TFLITE_FILE)
        return "tflite"
    target = staging / _SAVEDMODEL_DIR
    target.mkdir()  # an archive without members creates nothing
    try:
        with tarfile.open(blob, "r:*") as archive:
            # The "data" filter refuses "..", links out of the tree and devices, and strips
            # leading slashes so absolute names land inside the folder.
            archive.extractall(target, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelError(f"cannot unpack the model archive: {exc}") from None
    blob.unlink()
    root = _find_saved_model(target)
    if root != target:
        tmp = staging / ".root"
        root.rename(tmp)
        shutil.rmtree(target)
        tmp.rename(target)
    return "savedmodel"


def _find_saved_model(folder: Path) -> Path:
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        if (candidate / "saved_model.pb").exists() or (candidate / "saved_model.pbtxt").exists():
            return candidate
    raise ModelError("the archive holds no saved_model.pb")


def _publish(staging: Path, entry: Path) -> None:
    """Move the finished staging folder into place in one rename."""
    try:
        staging.rename(entry)
    except OSError:
        # Another process published the same URL first; its copy is equally good.
        log.debug("model_cache_race_lost", entry=str(entry))


def _read_entry(entry: Path) -> tuple[ModelKind, Path, int] | None:
    meta = entry / _META_FILE
    if not meta.exists():
        return None
    info = orjson.loads(meta.read_bytes())
    kind: ModelKind = "tflite" if info["kind"] == "tflite" else "savedmodel"
    path = entry / (_TFLITE_FILE if kind == "tflite" else _SAVEDMODEL_DIR)
    return kind, path, int(info["bytes"])
