"""What was served decides the backend (consumer/model/served.py): files and archives
recognised by content, unusable or hostile content refused, leaving nothing behind."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import orjson
import pytest

from consumer.model import BUILTIN_BACKENDS, ModelError, ModelFetcher
from consumer.model.backends.litert import is_flatbuffer
from consumer.model.fetch import cache_key
from consumer.model.served import is_archive, take_model
from tests.conftest import LoopbackServer
from tests.consumer.model.support import (
    HTML_PAGE,
    Member,
    archive_files,
    assert_only_entry,
    link,
    make_tar,
    repack,
    tree_files,
)


def test_a_real_tflite_flatbuffer_is_recognised_by_its_identifier(
    tflite_bytes: bytes, tmp_path: Path
) -> None:
    assert tflite_bytes[4:8] == b"TFL3"
    assert is_flatbuffer(tflite_bytes[:8])
    assert is_flatbuffer(b"\x1c\x00\x00\x00TFL3")
    served = tmp_path / "download"
    served.write_bytes(tflite_bytes)
    assert BUILTIN_BACKENDS.recognise(served) == (BUILTIN_BACKENDS.named("litert"), served)


def test_archives_are_recognised(tf2_targz: bytes) -> None:
    assert is_archive(tf2_targz[:512])
    assert is_archive(gzip.compress(b"anything")[:512])
    plain = gzip.decompress(tf2_targz)
    assert is_archive(plain[:512])
    for fmt in (tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
            info = tarfile.TarInfo("saved_model.pb")
            tar.addfile(info, io.BytesIO(b""))
        assert is_archive(buffer.getvalue()[:512])


@pytest.mark.parametrize(
    "head",
    [HTML_PAGE, b"", b"TFL3", b"PK\x03\x04" + bytes(508), b'{"error": "quota"}', bytes(512)],
    ids=["html", "empty", "too-short", "zip", "json", "zeros"],
)
def test_anything_else_is_refused(head: bytes, tmp_path: Path) -> None:
    blob = tmp_path / "download"
    blob.write_bytes(head)

    assert not is_archive(head)
    assert not is_flatbuffer(head)
    with pytest.raises(ModelError, match="neither a TFLite flatbuffer nor a SavedModel") as caught:
        take_model(blob, tmp_path, BUILTIN_BACKENDS)
    assert caught.value.retryable is False


async def test_fetch_tflite(
    http_server: LoopbackServer, fetcher: ModelFetcher, cache: Path, tflite_bytes: bytes
) -> None:
    url = http_server.add_bytes("/models/birds.tflite", tflite_bytes)

    artifact = await fetcher.fetch_model(url)

    assert artifact.url == url
    assert artifact.kind == "tflite"
    assert artifact.path == cache / cache_key(url) / "model.tflite"
    assert artifact.path.read_bytes() == tflite_bytes
    assert artifact.size_bytes == len(tflite_bytes)
    assert artifact.from_cache is False
    assert artifact.fetch_s > 0
    meta = orjson.loads((cache / cache_key(url) / "source.json").read_bytes())
    digest = hashlib.sha256(tflite_bytes)
    assert meta == {
        "url": url,
        "kind": "tflite",
        "bytes": len(tflite_bytes),
        "sha256": digest.hexdigest(),
        "entry_sha256": hashlib.sha256(digest.digest()).hexdigest(),
    }
    assert artifact.sha256 == digest.hexdigest()
    assert_only_entry(cache, url)
    assert http_server.hits["/models/birds.tflite"] == 1


@pytest.mark.parametrize(
    "layout", ["targz", "plain-tar", "dot-prefix", "subfolder", "plain-tar-subfolder"]
)
async def test_fetch_savedmodel_archives(
    http_server: LoopbackServer,
    fetcher: ModelFetcher,
    cache: Path,
    tf2_targz: bytes,
    layout: str,
) -> None:
    body = {
        "targz": tf2_targz,
        "plain-tar": gzip.decompress(tf2_targz),
        "dot-prefix": repack(tf2_targz, "./"),
        "subfolder": repack(tf2_targz, "birds_V1/"),
        "plain-tar-subfolder": repack(tf2_targz, "birds_V1/", gz=False),
    }[layout]
    url = http_server.add_bytes("/models/birds", body)

    artifact = await fetcher.fetch_model(url)

    assert artifact.kind == "savedmodel"
    assert artifact.path == cache / cache_key(url) / "saved_model"
    assert artifact.size_bytes == len(body)
    # Exactly the SavedModel's files, lifted out of any subfolder.
    assert tree_files(artifact.path) == archive_files(tf2_targz)
    assert (artifact.path / "saved_model.pb").is_file()
    assert (artifact.path / "variables").is_dir()
    assert sorted(os.listdir(artifact.path.parent)) == ["saved_model", "source.json"]
    assert_only_entry(cache, url)


async def test_savedmodel_in_pbtxt_form_is_accepted(
    http_server: LoopbackServer, fetcher: ModelFetcher
) -> None:
    body = make_tar([("m/saved_model.pbtxt", b"meta_graphs {}"), ("m/variables/x", b"1")])
    url = http_server.add_bytes("/pbtxt.tar.gz", body)

    artifact = await fetcher.fetch_model(url)

    assert artifact.kind == "savedmodel"
    assert (artifact.path / "saved_model.pbtxt").read_bytes() == b"meta_graphs {}"


async def test_kind_comes_from_content_not_name(
    http_server: LoopbackServer,
    fetcher: ModelFetcher,
    tflite_bytes: bytes,
    tf2_targz: bytes,
) -> None:
    tflite_url = http_server.add_bytes("/model.tar.gz", tflite_bytes, "application/gzip")
    archive_url = http_server.add_bytes("/model.tflite", tf2_targz, "application/octet-stream")

    tflite = await fetcher.fetch_model(tflite_url)
    archive = await fetcher.fetch_model(archive_url)

    assert tflite.kind == "tflite"
    assert tflite.path.read_bytes() == tflite_bytes
    assert archive.kind == "savedmodel"
    assert (archive.path / "saved_model.pb").is_file()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (HTML_PAGE, "neither a TFLite flatbuffer nor a SavedModel archive"),
        (b"", "neither a TFLite flatbuffer nor a SavedModel archive"),
        (b"\x1f\x8b\x08\x00" + os.urandom(600), "cannot unpack the model archive"),
        (gzip.compress(HTML_PAGE * 20), "cannot unpack the model archive"),
        (
            make_tar([("variables/variables.index", b"x")]),
            "holds no .tflite file or saved_model.pb",
        ),
        (make_tar([]), "holds no .tflite file or saved_model.pb"),
    ],
    ids=["html", "empty-body", "corrupt-gzip", "gzipped-html", "no-saved-model", "empty-tar"],
)
async def test_unusable_content_is_a_permanent_error_and_leaves_nothing(
    http_server: LoopbackServer,
    fetcher: ModelFetcher,
    cache: Path,
    body: bytes,
    reason: str,
) -> None:
    url = http_server.add_bytes("/model", body, "text/html")

    with pytest.raises(ModelError, match=reason) as caught:
        await fetcher.fetch_model(url)

    assert caught.value.retryable is False
    assert os.listdir(cache) == []


@pytest.mark.parametrize(
    "members",
    [
        [("saved_model.pb", b"pb"), ("../../../evil", b"pwned")],
        [("saved_model.pb", b"pb"), ("variables/../../../../evil", b"pwned")],
        [("saved_model.pb", b"pb"), link("escape", "/")],
        [("saved_model.pb", b"pb"), link("escape", "../../..")],
        [("saved_model.pb", b"pb"), link("escape", "../../.."), ("escape/evil", b"pwned")],
        [("saved_model.pb", b"pb"), link("passwd", "/etc/passwd", hard=True)],
        [("saved_model.pb", b"pb"), link("up", "../../../evil", hard=True)],
    ],
    ids=[
        "dotdot",
        "dotdot-inside-path",
        "symlink-absolute",
        "symlink-relative-out",
        "write-through-symlink",
        "hardlink-absolute",
        "hardlink-out",
    ],
)
async def test_archives_reaching_outside_are_refused(
    http_server: LoopbackServer,
    fetcher: ModelFetcher,
    tmp_path: Path,
    cache: Path,
    members: list[Member],
) -> None:
    (tmp_path / "evil").write_bytes(b"original")  # a hard link to it must not be made either
    url = http_server.add_bytes("/hostile.tar.gz", make_tar(members))

    with pytest.raises(ModelError, match="cannot unpack the model archive") as caught:
        await fetcher.fetch_model(url)

    assert caught.value.retryable is False
    assert (tmp_path / "evil").read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "evil"]
    assert os.listdir(cache) == []  # the staging folder went too


async def test_absolute_member_paths_are_kept_inside_the_entry(
    http_server: LoopbackServer, fetcher: ModelFetcher, tmp_path: Path, cache: Path
) -> None:
    outside = tmp_path / "outside" / "planted"
    body = make_tar([("saved_model.pb", b"pb"), (str(outside), b"pwned")])
    url = http_server.add_bytes("/absolute.tar.gz", body)

    try:
        artifact = await fetcher.fetch_model(url)
    except ModelError:  # refusing would be as good as neutralising
        assert os.listdir(cache) == []
    else:
        # The leading "/" is dropped: the file lands under the entry, never at the real path.
        assert (artifact.path / str(outside).lstrip("/")).read_bytes() == b"pwned"
    assert not outside.exists()
    assert not (tmp_path / "outside").exists()
