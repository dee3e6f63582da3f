"""From what a model URL served to the model a backend loads, judged by content, not by name.

The backends are asked about the downloaded file first; when none recognises it and it is an
archive (tar, gzipped or not), it is unpacked and they are asked about the folder.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from consumer.model.backend import Backend
from consumer.model.errors import ModelError
from consumer.model.registry import Backends
from consumer.model.sources import describe_forms

# Enough for the plain-tar magic, at byte 257.
HEAD_BYTES = 512
_UNPACKED = ".unpacked"


def is_archive(head: bytes) -> bool:
    """Whether these first bytes start a gzip stream or a plain (ustar or pax) tar."""
    return head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"


def looks_like_html(head: bytes) -> bool:
    """Whether these first bytes start an HTML page (a sign-in or model page, say)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<!--"))


def unpack_archive(blob: Path, folder: Path) -> None:
    """Extract the tar archive `blob` (gzipped or not) into `folder`, refusing members that
    would land outside it; a damaged archive is a `ModelError`."""
    folder.mkdir()  # an archive without members creates nothing
    try:
        with tarfile.open(blob, "r:*") as archive:
            # The "data" filter refuses "..", links out of the tree and devices, and strips
            # leading slashes so absolute names land inside the folder.
            archive.extractall(folder, filter="data")
    except (tarfile.TarError, EOFError) as exc:
        raise ModelError(f"cannot unpack the model archive: {exc}") from None


def take_model(blob: Path, staging: Path, backends: Backends) -> Backend:
    """Move the model within the download `blob` to `staging`/<its backend's entry name>,
    leaving nothing else in `staging`, and return that backend. Raises `ModelError` when no
    backend recognises what was served."""
    found = backends.recognise(blob)
    if found is None:
        with blob.open("rb") as f:
            head = f.read(HEAD_BYTES)
        if not is_archive(head):
            served = backends.describe_served()
            if looks_like_html(head):
                raise ModelError(
                    f"served an HTML page, {served}: a model page is not a download; give "
                    f"{describe_forms()} (README: Model sources)"
                )
            raise ModelError(f"served content is {served} (starts {head[:8]!r})")
        unpacked = staging / _UNPACKED
        unpack_archive(blob, unpacked)
        blob.unlink()
        found = backends.recognise(unpacked)
        if found is None:
            members = backends.archive_members()
            holds = "no " + " or ".join(members) if members else "nothing a backend loads"
            raise ModelError(f"the archive holds {holds}")
    backend, model = found
    model.rename(staging / backend.entry_name)
    shutil.rmtree(staging / _UNPACKED, ignore_errors=True)  # what the model did not need
    return backend
