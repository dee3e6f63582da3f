"""The model cache on disk: entries keyed by URL, unpacked from what was served, published by an
atomic rename; and the one error type of a cache folder that cannot be written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import aiohttp
import orjson
import structlog

from consumer.model.errors import ModelError

log = structlog.get_logger(__name__)

ModelKind = Literal["tflite", "savedmodel"]
TFLITE_FILE = "model.tflite"
SAVEDMODEL_DIR = "saved_model"
META_FILE = "source.json"
# What a failed write says when the folder, not the content, is the problem.
_WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
    | {errno.ENOTDIR, errno.EEXIST}
)


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


def unpack(blob: Path, staging: Path, folder: Path) -> ModelKind:
    try:
        return _unpack_into(blob, staging)
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:
            raise CacheWriteError(folder, exc) from exc
        raise ModelError(f"cannot unpack the model archive: {exc}") from None


def _unpack_into(blob: Path, staging: Path) -> ModelKind:
    with blob.open("rb") as f:
        head = f.read(512)
    kind = sniff_kind(head)
    if kind == "tflite":
        blob.rename(staging / TFLITE_FILE)
        return "tflite"
    target = staging / SAVEDMODEL_DIR
    target.mkdir()  # an archive without members creates nothing
    try:
        with tarfile.open(blob, "r:*") as archive:
            # The "data" filter refuses "..", links out of the tree and devices, and strips
            # leading slashes so absolute names land inside the folder.
            archive.extractall(target, filter="data")
    except (tarfile.TarError, EOFError) as exc:
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


def publish(staging: Path, entry: Path) -> None:
    """Move the finished staging folder into place in one rename."""
    try:
        staging.rename(entry)
    except OSError:
        if not (entry / META_FILE).exists():
            raise
        # Another process published the same URL first; its copy is equally good.
        log.debug("model_cache_race_lost", entry=str(entry))


def read_entry(entry: Path) -> tuple[ModelKind, Path, int] | None:
    meta = entry / META_FILE
    if not meta.exists():
        return None
    info = orjson.loads(meta.read_bytes())
    kind: ModelKind = "tflite" if info["kind"] == "tflite" else "savedmodel"
    path = entry / (TFLITE_FILE if kind == "tflite" else SAVEDMODEL_DIR)
    return kind, path, int(info["bytes"])
