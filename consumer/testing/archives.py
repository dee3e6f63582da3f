"""Reproducible archives: the same folder always packs to the same bytes."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path


def write_tar_gz(source: Path, path: Path, member_prefix: str = "") -> None:
    """Pack the contents of `source` at the archive root, reproducibly (as TF Hub serves them);
    each member's name starts with `member_prefix` ("./" as `tar -C source .` writes them)."""

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for item in sorted(source.rglob("*"), key=lambda p: p.relative_to(source).parts):
            name = member_prefix + item.relative_to(source).as_posix()
            tar.add(item, arcname=name, recursive=False, filter=normalise)
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buffer.getvalue())
    tmp.replace(path)
