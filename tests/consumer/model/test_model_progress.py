"""A model download reports its progress (consumer/model/progress.py): a bar on stderr for a
terminal, log lines at intervals, even while nothing arrives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from consumer.model import ModelFetcher
from tests.conftest import LoopbackServer


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
