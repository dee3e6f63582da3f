"""A model cache folder that cannot be written (read-only, full, not a folder): one line
naming the setting, or, when asked (the classify command), a temporary folder instead."""

from __future__ import annotations

import asyncio
import errno
import io
import tempfile
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from consumer.model import ModelError, ModelFetcher
from tests.conftest import LoopbackServer, TinyModels


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
