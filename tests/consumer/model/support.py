"""Builders and checks the model-layer tests share: archives (hostile ones too), cache
entries, loopback URLs that refuse or hold their answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import tarfile
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from consumer.model.fetch import cache_key
from tests.conftest import LoopbackServer

HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>"

Member = tarfile.TarInfo | tuple[str, bytes]


def make_tar(members: Sequence[Member], *, gz: bool = True) -> bytes:
    """A tar (gzipped unless `gz` is False) holding files given as (name, data) and raw TarInfos."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def link(name: str, target: str, *, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def archive_files(archive: bytes) -> dict[str, bytes]:
    """Regular files of an archive by member name (without a leading './')."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for info in tar.getmembers():
            extracted = tar.extractfile(info) if info.isfile() else None
            if extracted is not None:
                files[info.name.removeprefix("./")] = extracted.read()
    return files


def repack(archive: bytes, prefix: str, *, gz: bool = True) -> bytes:
    """The same archive with every member name prefixed (a folder, or './')."""
    return make_tar([(prefix + name, data) for name, data in archive_files(archive).items()], gz=gz)


def tree_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def assert_only_entry(cache: Path, handle: str) -> None:
    """The cache holds exactly the entry of `handle`: no staging folders, nothing else."""
    assert sorted(os.listdir(cache)) == [cache_key(handle)]


def closed_port_url(path: str = "/model.tflite") -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def add_rendezvous(server: LoopbackServer, path: str, body: bytes, parties: int = 2) -> str:
    """Serve `body` only once `parties` requests are waiting, so the downloads truly overlap."""
    arrived = 0
    everyone = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal arrived
        arrived += 1
        if arrived >= parties:
            everyone.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), timeout=20)
        return web.Response(body=body, content_type="application/octet-stream")

    return server.add_handler(path, handler)


class LoopbackResolver(AbstractResolver):
    """Resolves every host name (tfhub.dev, kaggle.com) to the loopback server."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None
