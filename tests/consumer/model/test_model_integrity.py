"""The model's integrity and identity: the sha256 pin on download and on cache reuse, the
digest of the cached files re-checked, the model named in the log and in /metrics."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from consumer.config import SettingsError, load_settings
from consumer.metrics import Metrics
from consumer.model import ModelError, ModelFetcher
from consumer.model.fetch import cache_key
from tests.conftest import LoopbackServer
from tests.consumer.model.published import FAKE_TFLITE

OTHER_TFLITE = FAKE_TFLITE + b"another build"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_matching_pin_is_accepted_and_recorded(
    http_server: LoopbackServer, session: aiohttp.ClientSession, cache: Path
) -> None:
    url = http_server.add_bytes("/m.tflite", FAKE_TFLITE)

    artifact = await ModelFetcher(session, cache).fetch_model(url, sha(FAKE_TFLITE))
    again = await ModelFetcher(session, cache).fetch_model(url, sha(FAKE_TFLITE))

    assert artifact.sha256 == again.sha256 == sha(FAKE_TFLITE)
    assert again.from_cache is True
    assert http_server.hits["/m.tflite"] == 1


async def test_a_download_of_another_digest_is_refused_in_one_line_naming_both(
    http_server: LoopbackServer, session: aiohttp.ClientSession, cache: Path
) -> None:
    url = http_server.add_bytes("/m.tflite", OTHER_TFLITE)
    pin = sha(FAKE_TFLITE)

    with pytest.raises(ModelError) as caught:
        await ModelFetcher(session, cache).fetch_model(url, pin)

    message = str(caught.value)
    assert message == (
        f"model {url} has sha256 {sha(OTHER_TFLITE)}, but BIRDWATCH_MODEL_SHA256 is {pin}: refused"
    )
    assert caught.value.retryable is False
    assert [p.name for p in cache.iterdir()] == []  # nothing cached, no staging left


async def test_a_mistyped_pin_is_refused_without_costing_the_cache(
    http_server: LoopbackServer, session: aiohttp.ClientSession, cache: Path
) -> None:
    url = http_server.add_bytes("/m.tflite", FAKE_TFLITE)
    await ModelFetcher(session, cache).fetch_model(url)

    with pytest.raises(ModelError, match="but BIRDWATCH_MODEL_SHA256 is 0000"):
        await ModelFetcher(session, cache).fetch_model(url, "0" * 64)
    again = await ModelFetcher(session, cache).fetch_model(url, sha(FAKE_TFLITE))

    assert again.from_cache is True
    assert http_server.hits["/m.tflite"] == 2  # the first download and the refused one


async def test_a_cached_model_of_another_digest_is_downloaded_again_and_checked(
    http_server: LoopbackServer, session: aiohttp.ClientSession, cache: Path
) -> None:
    url = http_server.add_bytes("/m.tflite", FAKE_TFLITE)
    await ModelFetcher(session, cache).fetch_model(url)  # cached without a pin
    http_server.add_bytes("/m.tflite", OTHER_TFLITE)  # the publisher's new build

    with capture_logs() as logs:
        artifact = await ModelFetcher(session, cache).fetch_model(url, sha(OTHER_TFLITE))

    assert (artifact.from_cache, artifact.sha256) == (False, sha(OTHER_TFLITE))
    assert artifact.path.read_bytes() == OTHER_TFLITE
    discarded = [e for e in logs if e["event"] == "model_cache_refused"]
    assert len(discarded) == 1
    assert sha(FAKE_TFLITE) in discarded[0]["reason"]
    assert sorted(p.name for p in cache.iterdir()) == [cache_key(url)]


async def test_cached_files_changed_on_disk_are_noticed_and_replaced(
    http_server: LoopbackServer, session: aiohttp.ClientSession, cache: Path
) -> None:
    url = http_server.add_bytes("/m.tflite", FAKE_TFLITE)
    first = await ModelFetcher(session, cache).fetch_model(url)
    first.path.write_bytes(FAKE_TFLITE[:-1] + b"\x01")  # a flipped byte

    with capture_logs() as logs:
        again = await ModelFetcher(session, cache).fetch_model(url)

    assert again.from_cache is False
    assert again.path.read_bytes() == FAKE_TFLITE
    assert http_server.hits["/m.tflite"] == 2
    reasons = [e["reason"] for e in logs if e["event"] == "model_cache_refused"]
    assert len(reasons) == 1
    assert reasons[0].startswith("its files changed on disk")


async def test_an_entry_cached_before_digests_is_downloaded_again(
    http_server: LoopbackServer, session: aiohttp.ClientSession, cache: Path
) -> None:
    url = http_server.add_bytes("/m.tflite", FAKE_TFLITE)
    entry = cache / cache_key(url)
    entry.mkdir(parents=True)
    (entry / "model.tflite").write_bytes(FAKE_TFLITE)
    (entry / "source.json").write_text(f'{{"url": "{url}", "kind": "tflite", "bytes": 1}}')

    artifact = await ModelFetcher(session, cache).fetch_model(url)

    assert (artifact.from_cache, artifact.sha256) == (False, sha(FAKE_TFLITE))


def test_the_pin_setting_takes_a_sha256_only(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = sha(b"x")
    monkeypatch.setenv("BIRDWATCH_MODEL_SHA256", f"sha256:{digest.upper()}")
    assert load_settings().model_sha256 == digest
    monkeypatch.setenv("BIRDWATCH_MODEL_SHA256", "")
    assert load_settings().model_sha256 is None
    monkeypatch.setenv("BIRDWATCH_MODEL_SHA256", "abc123")
    with pytest.raises(SettingsError, match=r"BIRDWATCH_MODEL_SHA256: .*64 hexadecimal digits"):
        load_settings()


def test_the_model_is_named_in_an_info_metric() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    metrics.set_model("https://tfhub.dev/x", "ab" * 32, "litert")

    labels = {"url": "https://tfhub.dev/x", "sha256": "ab" * 32, "backend": "litert"}
    assert registry.get_sample_value("birdwatch_model_info", labels) == 1.0
