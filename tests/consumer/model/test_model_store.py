"""The model cache on disk (consumer/model/store.py): keyed by URL, hit by later fetchers,
shared by fetchers and processes racing for one URL, or private when there is none."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from consumer.model import ModelFetcher
from consumer.model.fetch import cache_key
from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.model.support import (
    add_rendezvous,
    archive_files,
    assert_only_entry,
    tree_files,
)


def test_cache_key_is_stable_and_per_url() -> None:
    url = "https://example.com/a.tflite"
    key = cache_key(url)
    assert key == cache_key(url)
    # A file name on any file system: 32 lower-case hex digits, nothing else.
    assert re.fullmatch(r"[0-9a-f]{32}", key), key
    assert key != cache_key("https://example.com/b.tflite")


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
