"""Fetching models and label maps over loopback HTTP into the cache (consumer.model.fetch)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import io
import json
import os
import re
import socket
import sys
import tarfile
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from structlog.testing import capture_logs

from consumer.config import TFHUB_BIRDS_LITE_MODEL, TFHUB_BIRDS_MODEL
from consumer.model import BUILTIN_BACKENDS, ModelError, ModelFetcher
from consumer.model.backends.litert import is_flatbuffer
from consumer.model.fetch import cache_key, download_url
from consumer.model.served import is_archive, take_model
from tests.conftest import LoopbackServer, TinyModels

HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>"

Member = tarfile.TarInfo | tuple[str, bytes]


# --- archive builders -------------------------------------------------------------------------


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


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def fetcher(session: aiohttp.ClientSession, cache: Path) -> ModelFetcher:
    return ModelFetcher(session, cache)


@pytest.fixture
def tflite_bytes(tiny_models: TinyModels) -> bytes:
    return tiny_models.tflite.read_bytes()


@pytest.fixture
def tf2_targz(tiny_models: TinyModels) -> bytes:
    return tiny_models.tf2_archive.read_bytes()


# --- download_url -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handle", "expected"),
    [
        (
            TFHUB_BIRDS_MODEL,
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1?tf-hub-format=compressed",
        ),
        (
            "https://www.tfhub.dev/google/aiy/vision/classifier/birds_V1/1",
            "https://www.tfhub.dev/google/aiy/vision/classifier/birds_V1/1"
            "?tf-hub-format=compressed",
        ),
        (
            TFHUB_BIRDS_LITE_MODEL,
            "https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3"
            "?lite-format=tflite",
        ),
        (
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1?tf-hub-format=compressed",
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1?tf-hub-format=compressed",
        ),
        (
            "https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3?lite-format=tflite",
            "https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3?lite-format=tflite",
        ),
        (
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1?mirror=eu",
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1"
            "?mirror=eu&tf-hub-format=compressed",
        ),
        (
            "https://example.com/models/birds.tar.gz",
            "https://example.com/models/birds.tar.gz",
        ),
        (
            "https://storage.googleapis.com/tfhub-lite-models/google/lite-model/aiy/birds_V1/3.tflite",
            "https://storage.googleapis.com/tfhub-lite-models/google/lite-model/aiy/birds_V1/3.tflite",
        ),
        ("http://127.0.0.1:8080/lite-model/x?a=1", "http://127.0.0.1:8080/lite-model/x?a=1"),
    ],
    ids=[
        "hub-savedmodel",
        "hub-www",
        "hub-lite",
        "hub-format-already-set",
        "lite-format-already-set",
        "other-query-kept",
        "plain-archive",
        "gcs-lite-path-not-hub",
        "loopback",
    ],
)
def test_download_url(handle: str, expected: str) -> None:
    assert download_url(handle) == expected


# --- what was served -------------------------------------------------------------------------


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


def test_cache_key_is_stable_and_per_url() -> None:
    url = "https://example.com/a.tflite"
    key = cache_key(url)
    assert key == cache_key(url)
    # A file name on any file system: 32 lower-case hex digits, nothing else.
    assert re.fullmatch(r"[0-9a-f]{32}", key), key
    assert key != cache_key("https://example.com/b.tflite")


# --- fetch_model: what was served ---------------------------------------------------------------


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
    assert meta == {"url": url, "kind": "tflite", "bytes": len(tflite_bytes)}
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
        (make_tar([("variables/variables.index", b"x")]), "holds no saved_model.pb"),
        (make_tar([]), "holds no saved_model.pb"),
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
    ("status", "retryable"),
    [(404, False), (403, False), (410, False), (408, True), (429, True), (500, True), (503, True)],
)
async def test_http_errors(
    http_server: LoopbackServer,
    fetcher: ModelFetcher,
    cache: Path,
    status: int,
    retryable: bool,
) -> None:
    url = http_server.add_bytes("/model.tflite", b"nope", "text/plain", status=status)

    with pytest.raises(ModelError, match=f"answered HTTP {status}") as caught:
        await fetcher.fetch_model(url)

    assert caught.value.retryable is retryable
    assert http_server.hits["/model.tflite"] == 1
    assert os.listdir(cache) == []


async def test_unreachable_server_is_retryable(fetcher: ModelFetcher, cache: Path) -> None:
    with pytest.raises(ModelError, match="failed: ClientConnectorError") as caught:
        await fetcher.fetch_model(closed_port_url())

    assert caught.value.retryable is True
    assert os.listdir(cache) == []


async def test_read_timeout_is_retryable(http_server: LoopbackServer, cache: Path) -> None:
    url = http_server.add_bytes("/slow.tflite", b"late", delay_s=0.5)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.05)) as slow:
        with pytest.raises(ModelError, match=r"failed: .*Timeout") as caught:
            await ModelFetcher(slow, cache).fetch_model(url)

    assert caught.value.retryable is True
    assert os.listdir(cache) == []


class _HubResolver(AbstractResolver):
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


async def test_tfhub_handles_download_with_their_format_parameter_through_a_redirect(
    http_server: LoopbackServer, cache: Path, tflite_bytes: bytes, tf2_targz: bytes
) -> None:
    port = http_server.base.rsplit(":", 1)[1]
    kaggle = f"http://kaggle.com:{port}"
    queries: list[tuple[str, str]] = []

    async def hub(request: web.Request) -> web.StreamResponse:
        queries.append((request.path, request.query_string))
        if request.query.get("tf-hub-format") == "compressed":
            raise web.HTTPFound(f"{kaggle}/kaggle/birds.tar.gz")
        if request.query.get("lite-format") == "tflite":
            raise web.HTTPFound(f"{kaggle}/kaggle/birds.tflite")
        return web.Response(body=HTML_PAGE, content_type="text/html")

    saved_model_path = "/google/aiy/vision/classifier/birds_V1/1"
    lite_path = "/google/lite-model/aiy/vision/classifier/birds_V1/3"
    http_server.add_handler(saved_model_path, hub)
    http_server.add_handler(lite_path, hub)
    http_server.add_bytes("/kaggle/birds.tar.gz", tf2_targz)
    http_server.add_bytes("/kaggle/birds.tflite", tflite_bytes)
    hub_handle = f"http://tfhub.dev:{port}{saved_model_path}"
    lite_handle = f"http://tfhub.dev:{port}{lite_path}"

    connector = aiohttp.TCPConnector(resolver=_HubResolver())
    async with aiohttp.ClientSession(connector=connector) as hub_session:
        fetcher = ModelFetcher(hub_session, cache)
        savedmodel = await fetcher.fetch_model(hub_handle)
        lite = await fetcher.fetch_model(lite_handle)

    assert queries == [
        (saved_model_path, "tf-hub-format=compressed"),
        (lite_path, "lite-format=tflite"),
    ]
    assert savedmodel.kind == "savedmodel"
    assert savedmodel.url == hub_handle  # cached under the handle, not the download URL
    assert savedmodel.path.parent.name == cache_key(hub_handle)
    assert lite.kind == "tflite"
    assert lite.path.read_bytes() == tflite_bytes


async def test_progress_goes_to_stderr(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    cache: Path,
    tflite_bytes: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = http_server.add_bytes("/birds.tflite", tflite_bytes)

    await ModelFetcher(session, cache, progress=True).fetch_model(url)

    captured = capsys.readouterr()
    assert "\rdownloading model: 0.0 / 0.0 MiB" in captured.err
    assert captured.err.endswith("\n")
    assert "downloading model" not in captured.out


# --- the cache ----------------------------------------------------------------------------------


async def test_second_fetch_is_a_cache_hit(
    http_server: LoopbackServer, session: aiohttp.ClientSession, cache: Path, tf2_targz: bytes
) -> None:
    url = http_server.add_bytes("/birds.tar.gz", tf2_targz)
    fetcher = ModelFetcher(session, cache)
    first = await fetcher.fetch_model(url)

    again = await fetcher.fetch_model(url)
    http_server.routes.clear()  # from here on the server answers 404 to everything
    other_instance = await ModelFetcher(session, cache).fetch_model(url)

    assert http_server.hits["/birds.tar.gz"] == 1
    for hit in (again, other_instance):
        assert hit.from_cache is True
        assert (hit.kind, hit.path, hit.size_bytes, hit.url) == (
            first.kind,
            first.path,
            first.size_bytes,
            first.url,
        )
    assert_only_entry(cache, url)


async def test_cache_is_keyed_by_url(
    http_server: LoopbackServer, fetcher: ModelFetcher, cache: Path, tflite_bytes: bytes
) -> None:
    first = http_server.add_bytes("/a.tflite", tflite_bytes)
    second = http_server.add_bytes("/b.tflite", tflite_bytes)

    a = await fetcher.fetch_model(first)
    b = await fetcher.fetch_model(second)

    assert (a.from_cache, b.from_cache) == (False, False)
    assert a.path != b.path
    assert sorted(os.listdir(cache)) == sorted([cache_key(first), cache_key(second)])


async def test_nested_cache_folder_is_created(
    http_server: LoopbackServer, session: aiohttp.ClientSession, tmp_path: Path, tflite_bytes: bytes
) -> None:
    url = http_server.add_bytes("/birds.tflite", tflite_bytes)
    nested = tmp_path / "a" / "b" / "models"

    artifact = await ModelFetcher(session, nested).fetch_model(url)

    assert artifact.path.is_relative_to(nested)


async def test_no_cache_mode_keeps_nothing_after_close(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    tf2_targz: bytes,
    tiny_models: TinyModels,
) -> None:
    model_url = http_server.add_bytes("/birds.tar.gz", tf2_targz)
    labels_url = http_server.add_bytes("/labels.csv", tiny_models.labels_csv, "text/csv")
    fetcher = ModelFetcher(session, None)

    artifact = await fetcher.fetch_model(model_url)
    labels = await fetcher.fetch_labels(labels_url)
    again = await fetcher.fetch_model(model_url)
    private_root = artifact.path.parent.parent

    assert labels == tiny_models.labels_csv
    assert (artifact.path / "saved_model.pb").is_file()
    assert private_root.name.startswith("birdwatch-model-")
    assert not artifact.path.is_relative_to(tmp_path)
    assert again.path == artifact.path  # reused while the fetcher lives
    assert http_server.hits["/birds.tar.gz"] == 1

    fetcher.close()

    assert not private_root.exists()
    assert not (tmp_path / "model-cache").exists()


# --- hostile archives -------------------------------------------------------------------------


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


# --- concurrent fetches -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tflite", "savedmodel"])
async def test_two_fetchers_racing_for_one_url_share_one_entry(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    cache: Path,
    tflite_bytes: bytes,
    tf2_targz: bytes,
    kind: str,
) -> None:
    body = tflite_bytes if kind == "tflite" else tf2_targz
    url = add_rendezvous(http_server, "/race", body)

    first, second = await asyncio.gather(
        ModelFetcher(session, cache).fetch_model(url),
        ModelFetcher(session, cache).fetch_model(url),
    )

    assert http_server.hits["/race"] == 2  # both really downloaded
    assert (first.from_cache, second.from_cache) == (False, False)
    assert first.kind == second.kind == kind
    assert first.path == second.path
    assert_only_entry(cache, url)
    if kind == "tflite":
        assert first.path.read_bytes() == tflite_bytes
    else:
        assert tree_files(first.path) == archive_files(tf2_targz)
    assert (await ModelFetcher(session, cache).fetch_model(url)).from_cache is True


_FETCH_IN_A_PROCESS = """
import asyncio, json, sys
from pathlib import Path

import aiohttp
from consumer.model import ModelFetcher


async def main() -> None:
    async with aiohttp.ClientSession() as session:
        artifact = await ModelFetcher(session, Path(sys.argv[1])).fetch_model(sys.argv[2])
    print(json.dumps({"kind": artifact.kind, "path": str(artifact.path),
                      "from_cache": artifact.from_cache}))


asyncio.run(main())
"""


async def test_two_processes_racing_for_one_url_share_one_entry(
    http_server: LoopbackServer, cache: Path, tf2_targz: bytes
) -> None:
    url = add_rendezvous(http_server, "/race.tar.gz", tf2_targz)

    async def fetch_in_a_process() -> dict[str, object]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _FETCH_IN_A_PROCESS,
            str(cache),
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
        return result

    first, second = await asyncio.gather(fetch_in_a_process(), fetch_in_a_process())

    assert http_server.hits["/race.tar.gz"] == 2
    assert first == second
    assert first == {
        "kind": "savedmodel",
        "path": str(cache / cache_key(url) / "saved_model"),
        "from_cache": False,
    }
    assert_only_entry(cache, url)
    assert tree_files(cache / cache_key(url) / "saved_model") == archive_files(tf2_targz)


# --- label maps -------------------------------------------------------------------------------


async def test_labels_are_fetched_once_then_cached(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    cache: Path,
    tiny_models: TinyModels,
) -> None:
    url = http_server.add_bytes("/labels.csv", tiny_models.labels_csv, "text/csv")
    fetcher = ModelFetcher(session, cache)

    first = await fetcher.fetch_labels(url)
    second = await fetcher.fetch_labels(url)
    other_instance = await ModelFetcher(session, cache).fetch_labels(url)

    assert first == second == other_instance == tiny_models.labels_csv
    assert http_server.hits["/labels.csv"] == 1
    assert os.listdir(cache) == [f"{cache_key(url)}.labels"]  # no temporary file left


@pytest.mark.parametrize(("status", "retryable"), [(404, False), (503, True)])
async def test_label_errors_are_not_cached(
    http_server: LoopbackServer,
    fetcher: ModelFetcher,
    status: int,
    retryable: bool,
) -> None:
    url = http_server.add_bytes("/labels.csv", b"oops", "text/plain", status=status)

    with pytest.raises(ModelError, match=f"HTTP {status}") as caught:
        await fetcher.fetch_labels(url)
    assert caught.value.retryable is retryable

    http_server.add_bytes("/labels.csv", b"0,a\n", "text/csv")
    assert await fetcher.fetch_labels(url) == b"0,a\n"
    assert http_server.hits["/labels.csv"] == 2


async def test_unreachable_labels_are_retryable(fetcher: ModelFetcher) -> None:
    with pytest.raises(ModelError, match="failed: ClientConnectorError") as caught:
        await fetcher.fetch_labels(closed_port_url("/labels.csv"))
    assert caught.value.retryable is True


# --- a slow download reports its progress --------------------------------------------------------


async def test_a_slow_download_logs_its_progress_at_intervals(
    http_server: LoopbackServer, session: aiohttp.ClientSession, cache: Path, tflite_bytes: bytes
) -> None:
    pieces = 6

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = len(tflite_bytes)
        await resp.prepare(request)
        step = -(-len(tflite_bytes) // pieces)
        for start in range(0, len(tflite_bytes), step):
            await resp.write(tflite_bytes[start : start + step])
            await asyncio.sleep(0.25)
        return resp

    url = http_server.add_handler("/slow.tflite", trickle)
    fetcher = ModelFetcher(session, cache, progress_interval_s=0.2)
    with capture_logs() as logs:
        artifact = await fetcher.fetch_model(url)

    assert artifact.size_bytes == len(tflite_bytes)
    started = [e for e in logs if e["event"] == "model_download_started"]
    assert started == [
        {
            "event": "model_download_started",
            "log_level": "info",
            "url": url,
            "total_bytes": len(tflite_bytes),
        }
    ]
    progress = [e for e in logs if e["event"] == "model_download_progress"]
    assert len(progress) >= 4  # ~1.5 s of download, one line every 0.2 s
    assert all(e["log_level"] == "info" for e in progress)
    sizes = [e["bytes"] for e in progress]
    assert sizes == sorted(sizes)
    assert 0 < sizes[-1] <= len(tflite_bytes)
    assert all(e["total_bytes"] == len(tflite_bytes) for e in progress)
    assert any(e["rate_kib_s"] > 0 for e in progress)
    elapsed = [e["elapsed_s"] for e in progress]
    assert elapsed == sorted(elapsed)
    assert elapsed[-1] >= 0.6
    assert all(0 < e["percent"] <= 100 for e in progress)


async def test_a_stalled_download_still_reports(
    http_server: LoopbackServer, session: aiohttp.ClientSession, cache: Path, tflite_bytes: bytes
) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)  # no Content-Length: the total is unknown
        await resp.write(tflite_bytes[:1000])
        await asyncio.sleep(0.7)
        await resp.write(tflite_bytes[1000:])
        return resp

    url = http_server.add_handler("/stall.tflite", stall)
    with capture_logs() as logs:
        await ModelFetcher(session, cache, progress_interval_s=0.2).fetch_model(url)

    progress = [e for e in logs if e["event"] == "model_download_progress"]
    assert len(progress) >= 2
    assert progress[1]["bytes"] == 1000
    assert progress[1]["rate_kib_s"] == 0  # nothing arrived since the previous line
    assert progress[1]["total_bytes"] is None
    assert progress[1]["percent"] is None
    assert progress[1]["eta_s"] is None


# --- a cache that cannot be written --------------------------------------------------------------


@pytest.fixture
def not_a_folder(tmp_path: Path) -> Path:
    """A cache path under a regular file: no one can create it, root included."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should go")
    return blocker / "models"


async def test_an_unwritable_cache_is_one_line_naming_the_setting(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    not_a_folder: Path,
    tflite_bytes: bytes,
    tiny_models: TinyModels,
) -> None:
    url = http_server.add_bytes("/birds.tflite", tflite_bytes)
    labels = http_server.add_bytes("/labels.csv", tiny_models.labels_csv)
    fetcher = ModelFetcher(session, not_a_folder)
    for fetch in (fetcher.fetch_model(url), fetcher.fetch_labels(labels)):
        with pytest.raises(ModelError) as info:
            await fetch
        message = str(info.value)
        assert message.startswith(f"cannot write the model cache {not_a_folder}: ")
        assert "BIRDWATCH_MODEL_CACHE_DIR" in message
        assert "\n" not in message
        assert info.value.retryable is False


async def test_an_unwritable_cache_falls_back_to_a_temporary_folder_when_asked(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    not_a_folder: Path,
    tflite_bytes: bytes,
    tiny_models: TinyModels,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    url = http_server.add_bytes("/birds.tflite", tflite_bytes)
    labels = http_server.add_bytes("/labels.csv", tiny_models.labels_csv)
    fetcher = ModelFetcher(session, not_a_folder, temporary_fallback=True)

    with capture_logs() as logs:
        artifact, label_bytes = await asyncio.gather(
            fetcher.fetch_model(url), fetcher.fetch_labels(labels)
        )

    assert artifact.path.read_bytes() == tflite_bytes
    assert label_bytes == tiny_models.labels_csv
    assert artifact.path.is_relative_to(temp_root)
    warnings = [e for e in logs if e["event"] == "model_cache_unwritable"]
    assert len(warnings) == 1  # two downloads failed, one folder replaced it
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["cache_dir"] == str(not_a_folder)
    assert "BIRDWATCH_MODEL_CACHE_DIR" in warnings[0]["hint"]
    fetcher.close()
    assert list(temp_root.iterdir()) == []


class FullDisk:
    """Files opened for writing whose writes fail as on a full disk."""

    def __init__(self, real: io.BufferedWriter) -> None:
        self._real = real

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self._real.close()


async def test_a_full_disk_falls_back_or_is_one_line(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    cache: Path,
    tflite_bytes: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = http_server.add_bytes("/birds.tflite", tflite_bytes)
    real_open = Path.open

    def open_full(path: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        handle = real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]
        full = "w" in mode and path.is_relative_to(cache)
        return FullDisk(handle) if full else handle

    monkeypatch.setattr(Path, "open", open_full)
    with pytest.raises(ModelError, match="No space left on device"):
        await ModelFetcher(session, cache).fetch_model(url)
    assert not list(cache.glob(".staging-*"))

    fetcher = ModelFetcher(session, cache, temporary_fallback=True)
    with capture_logs() as logs:
        artifact = await fetcher.fetch_model(url)
    assert artifact.path.read_bytes() == tflite_bytes
    assert not artifact.path.is_relative_to(cache)
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["model_cache_unwritable"]
    fetcher.close()


async def test_a_temporary_folder_that_cannot_be_written_either_is_one_line(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    not_a_folder: Path,
    tflite_bytes: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = http_server.add_bytes("/birds.tflite", tflite_bytes)
    fetcher = ModelFetcher(session, not_a_folder, temporary_fallback=True)
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp_full(*args: object, **kwargs: object) -> str:
        if str(kwargs.get("prefix", "")).startswith(".staging-"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkdtemp(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp_full)
    with pytest.raises(ModelError, match=r"cannot write the temporary model folder .*No space"):
        await fetcher.fetch_model(url)
    fetcher.close()
