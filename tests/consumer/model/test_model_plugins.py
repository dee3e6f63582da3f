"""Backends as plug-ins: a backend registered here is picked by what was served, cached under
its kind, preloaded from its URL guess and loaded by `load_classifier` / `load_model`."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import pytest

from consumer.model import (
    BUILTIN_BACKENDS,
    Backends,
    Classifier,
    ModelError,
    ModelFetcher,
    load_classifier,
    load_model,
)
from consumer.model.fetch import cache_key
from consumer.model_input import INPUT_SHAPE
from consumer.testing.fakes import FakeClassifier
from tests.conftest import LoopbackServer

MAGIC = b"MARKER-MODEL\n"


class MarkerBackend:
    """Loads "models" that are a file starting with MAGIC and then a number of classes, served
    as they are or as `marker.txt` inside an archive."""

    name = "marker"
    kind = "marker-v1"
    serves = "a marker file"
    archive_member = "marker.txt"
    entry_name = "marker"

    def __init__(self) -> None:
        self.preloaded_in: list[str] = []
        self.loaded: list[tuple[Path, int]] = []

    def find(self, served: Path) -> Path | None:
        if served.is_file():
            return served if served.read_bytes().startswith(MAGIC) else None
        for folder in (served, *sorted(p for p in served.iterdir() if p.is_dir())):
            member = folder / self.archive_member
            if member.is_file() and member.read_bytes().startswith(MAGIC):
                return folder
        return None

    def likely_at(self, url: str) -> bool:
        return url.endswith(".marker")

    def preload(self) -> None:
        self.preloaded_in.append(threading.current_thread().name)

    def load(self, path: Path, threads: int) -> Classifier:
        self.loaded.append((path, threads))
        text = (path / self.archive_member if path.is_dir() else path).read_bytes()
        return FakeClassifier(backend=self.name, num_classes=int(text.removeprefix(MAGIC)))


def marker_file(classes: int) -> bytes:
    return MAGIC + str(classes).encode()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def marker() -> MarkerBackend:
    return MarkerBackend()


@pytest.fixture
def backends(marker: MarkerBackend) -> Backends:
    return BUILTIN_BACKENDS.plus(marker)


async def test_a_registered_backend_is_picked_by_content_not_by_name(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    marker: MarkerBackend,
    backends: Backends,
) -> None:
    cache = tmp_path / "cache"
    url = http_server.add_bytes("/birds.tflite", marker_file(7))  # the name says TFLite

    artifact = await ModelFetcher(session, cache, backends=backends).fetch_model(url)
    classifier = load_classifier(artifact, 3, backends)

    assert artifact.kind == "marker-v1"
    assert artifact.path == cache / cache_key(url) / "marker"
    assert artifact.path.read_bytes() == marker_file(7)
    meta = orjson.loads((cache / cache_key(url) / "source.json").read_bytes())
    assert meta == {
        "url": url,
        "kind": "marker-v1",
        "bytes": len(marker_file(7)),
        "sha256": hashlib.sha256(marker_file(7)).hexdigest(),
        "entry_sha256": hashlib.sha256(hashlib.sha256(marker_file(7)).digest()).hexdigest(),
    }
    assert (classifier.backend, classifier.num_classes) == ("marker", 7)
    assert marker.loaded == [(artifact.path, 3)]
    # The warm-up ran on two probe images, one at a time (the model's own batch size).
    assert isinstance(classifier, FakeClassifier)
    assert classifier.batch_sizes == [1, 1]

    again = await ModelFetcher(session, cache, backends=backends).fetch_model(url)
    assert (again.from_cache, again.kind, again.path) == (True, "marker-v1", artifact.path)
    assert http_server.hits["/birds.tflite"] == 1


async def test_a_registered_backend_finds_its_model_inside_an_archive(
    http_server: LoopbackServer, session: aiohttp.ClientSession, tmp_path: Path, backends: Backends
) -> None:
    cache = tmp_path / "cache"
    body = tar_gz({"bundle/marker.txt": marker_file(4), "bundle/notes": b"x", "README": b"r"})
    url = http_server.add_bytes("/bundle.tar.gz", body)

    artifact = await ModelFetcher(session, cache, backends=backends).fetch_model(url)

    assert artifact.kind == "marker-v1"
    assert artifact.path == cache / cache_key(url) / "marker"
    assert sorted(os.listdir(artifact.path)) == ["marker.txt", "notes"]
    # What the model did not need (README, the download itself) is gone.
    assert sorted(os.listdir(artifact.path.parent)) == ["marker", "source.json"]
    assert load_classifier(artifact, 1, backends).num_classes == 4


async def test_what_no_backend_recognises_is_named_by_every_backend(
    http_server: LoopbackServer, session: aiohttp.ClientSession, tmp_path: Path, backends: Backends
) -> None:
    cache = tmp_path / "cache"
    marker_url = http_server.add_bytes("/m", marker_file(3))
    archive_url = http_server.add_bytes("/a.tar.gz", tar_gz({"other.txt": b"?"}))

    with pytest.raises(ModelError, match="neither a TFLite flatbuffer nor a SavedModel archive"):
        await ModelFetcher(session, cache).fetch_model(marker_url)  # the built-in ones only
    with pytest.raises(
        ModelError,
        match=r"^served content is neither a marker file nor a TFLite flatbuffer nor a "
        r"SavedModel archive \(starts b'GIF89a\\x01\\x00'\)$",
    ):
        await ModelFetcher(session, cache, backends=backends).fetch_model(
            http_server.add_bytes("/picture", b"GIF89a\x01\x00\x01\x00", "image/gif")
        )
    with pytest.raises(
        ModelError, match=r"^the archive holds no marker.txt or .tflite file or saved_model.pb$"
    ):
        await ModelFetcher(session, cache, backends=backends).fetch_model(archive_url)
    assert os.listdir(cache) == []


async def test_an_entry_whose_backend_is_gone_is_an_error_not_a_silent_download(
    http_server: LoopbackServer, session: aiohttp.ClientSession, tmp_path: Path, backends: Backends
) -> None:
    cache = tmp_path / "cache"
    url = http_server.add_bytes("/m", marker_file(3))
    await ModelFetcher(session, cache, backends=backends).fetch_model(url)

    with pytest.raises(ModelError, match=r"no backend loads 'marker-v1' models"):
        await ModelFetcher(session, cache).fetch_model(url)
    assert http_server.hits["/m"] == 1


async def test_load_model_preloads_the_likely_backend_in_the_inference_thread(
    http_server: LoopbackServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    marker: MarkerBackend,
    backends: Backends,
) -> None:
    model_url = http_server.add_bytes("/birds.marker", marker_file(3))
    labels_url = http_server.add_bytes("/labels.csv", b"0,a\n1,b\n2,c\n", "text/csv")
    fetcher = ModelFetcher(session, tmp_path / "cache", backends=backends)

    with ThreadPoolExecutor(1, "inference") as pool:
        model = await load_model(fetcher, model_url, labels_url, threads=2, pool=pool)

    assert marker.preloaded_in == ["inference_0"]
    assert (model.name, model.labels, model.from_cache) == (model_url, ["a", "b", "c"], False)
    assert model.classifier.backend == "marker"
    assert marker.loaded == [(tmp_path / "cache" / cache_key(model_url) / "marker", 2)]
    probs = model.classifier.predict(np.zeros((2, *INPUT_SHAPE), np.uint8))
    assert probs.shape == (2, 3)


async def test_load_model_checks_the_labels_against_the_loaded_backend(
    http_server: LoopbackServer, session: aiohttp.ClientSession, tmp_path: Path, backends: Backends
) -> None:
    model_url = http_server.add_bytes("/birds.marker", marker_file(3))
    labels_url = http_server.add_bytes("/labels.csv", b"0,a\n1,b\n", "text/csv")
    fetcher = ModelFetcher(session, tmp_path / "cache", backends=backends)

    with (
        ThreadPoolExecutor(1) as pool,
        pytest.raises(ModelError, match="2 labels but the model has 3 classes"),
    ):
        await load_model(fetcher, model_url, labels_url, threads=1, pool=pool)


@pytest.mark.parametrize(
    ("url", "likely"),
    [
        ("https://example.com/birds.tflite", "litert"),
        ("https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3", "litert"),
        ("https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1", "tensorflow"),
        ("https://example.com/birds.tar.gz", "tensorflow"),
        ("https://example.com/birds.marker", "marker"),
    ],
)
def test_the_first_backend_claiming_a_url_is_the_likely_one(
    backends: Backends, url: str, likely: str
) -> None:
    guess = backends.likely_at(url)
    assert guess is not None
    assert guess.name == likely


def test_backends_are_told_apart_by_name_and_kind(marker: MarkerBackend) -> None:
    with pytest.raises(ValueError, match="two backends share a name"):
        Backends([marker, MarkerBackend()])
    with pytest.raises(ValueError, match="no backends"):
        Backends([])
    assert [b.name for b in BUILTIN_BACKENDS] == ["litert", "tensorflow"]
    assert BUILTIN_BACKENDS.named("tensorflow").kind == "savedmodel"
    with pytest.raises(ModelError, match="no backend is named 'onnx'"):
        BUILTIN_BACKENDS.named("onnx")
