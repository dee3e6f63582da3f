"""The model cache on disk: entries keyed by URL, each holding the model its backend recognised
in what was served and a `source.json` naming its kind, published by an atomic rename; and the
one error type of a cache folder that cannot be written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import structlog

from consumer.model.backend import Backend
from consumer.model.errors import ModelError
from consumer.model.registry import Backends
from consumer.model.served import take_model

log = structlog.get_logger(__name__)

META_FILE = "source.json"
# What a failed write says when the folder, not the content, is the problem.
_WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
    | {errno.ENOTDIR, errno.EEXIST}
)


def cache_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


class CacheWriteError(Exception):
    """Writing into the cache folder failed (read-only, full, not a folder...)."""

    def __init__(self, folder: Path, error: OSError) -> None:
        super().__init__(f"{folder}: {error.strerror or error}")
        self.folder = folder


@contextlib.contextmanager
def writes_to(folder: Path) -> Iterator[None]:
    """File-system failures of the cache folder as `CacheWriteError`."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError):
        raise  # network failures that happen to be OSErrors too
    except OSError as exc:
        raise CacheWriteError(folder, exc) from exc


def unpack(blob: Path, staging: Path, folder: Path, backends: Backends) -> Backend:
    """The model within the download `blob`, moved into `staging` (see `take_model`)."""
    try:
        return take_model(blob, staging, backends)
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:
            raise CacheWriteError(folder, exc) from exc
        raise ModelError(f"cannot unpack the model archive: {exc}") from None


def publish(staging: Path, entry: Path) -> None:
    """Move the finished staging folder into place in one rename."""
    try:
        staging.rename(entry)
    except OSError:
        if not (entry / META_FILE).exists():
            raise
        # Another process published the same URL first; its copy is equally good.
        log.debug("model_cache_race_lost", entry=str(entry))


@dataclass(frozen=True)
class CacheEntry:
    """A model in the cache: its kind, where it is, the size and sha256 of its download, and
    the digest of the files kept (`entry_digest`), None in entries older than digests."""

    kind: str
    path: Path
    size: int
    sha256: str | None
    entry_sha256: str | None


def read_entry(entry: Path, backends: Backends) -> CacheEntry | None:
    """The model in cache `entry`, or None when there is none."""
    meta = entry / META_FILE
    if not meta.exists():
        return None
    info = orjson.loads(meta.read_bytes())
    kind = str(info["kind"])
    return CacheEntry(
        kind,
        entry / backends.of_kind(kind).entry_name,
        int(info["bytes"]),
        info.get("sha256"),
        info.get("entry_sha256"),
    )


def write_meta(
    staging: Path, url: str, kind: str, size: int, sha256: str, entry_sha256: str
) -> None:
    meta = {"url": url, "kind": kind, "bytes": size, "sha256": sha256}
    (staging / META_FILE).write_bytes(orjson.dumps({**meta, "entry_sha256": entry_sha256}))


def entry_digest(path: Path) -> str:
    """One sha256 over the model's files (a file, or every file of a folder with its relative
    name), so that a cached model changed or damaged on disk is noticed."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def discard(entry: Path) -> None:
    """Remove a cache entry found unfit, by a rename first so no reader sees it half gone."""
    doomed = entry.with_name(f".discarded-{entry.name}-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        entry.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)
