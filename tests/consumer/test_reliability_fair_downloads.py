"""One host that hangs in the middle of its bodies must not starve the photos of another host.

64 downloads from 127.0.0.2 send their headers and a first part of the body, then hang; 20
photos from 127.0.0.1 are submitted behind them, through the real runtime (default settings:
32 download slots, 16 per host, 10 s per attempt, 20 s per download). The photos' median time
to result is asserted with a generous bound; the figures go to .cache/reliability/.
"""

from __future__ import annotations

import asyncio
import io
import random
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from consumer.config import Settings
from consumer.pipeline import WorkItem
from consumer.runtime import Runtime
from schemas import ImageEvent, PredictionResult
from tests.conftest import LoopbackServer, TinyModels
from tests.reliability_support import record_figures

pytestmark = pytest.mark.slow

HANGING, PHOTOS = 64, 20
MEDIAN_BOUND_S = 5.0


def photo_jpeg(seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (800, 600), rng.randbytes(800 * 600 * 3))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def hang_mid_body(served: list[int]) -> Callable[[web.Request], object]:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = 200_000
        await resp.prepare(request)
        await resp.write(b"\xff\xd8\xff\xe0" + bytes(20_000))
        served.append(1)
        for _ in range(600):  # until the client hangs up (60 s at most)
            if request.transport is None or request.transport.is_closing():
                break
            await asyncio.sleep(0.1)
        return resp

    return handler


async def test_a_hanging_host_does_not_starve_another_hosts_photos(
    http_server: LoopbackServer,
    other_host: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = make_settings(
        model_url=http_server.add_bytes("/model.tflite", tiny_models.tflite.read_bytes()),
        labels_url=http_server.add_bytes("/labels.csv", tiny_models.labels_csv, "text/csv"),
        decode_threads=2,
        fetch_concurrency=32,
    )
    served: list[int] = []
    hang = other_host.add_handler("/hang.jpg", hang_mid_body(served))  # type: ignore[arg-type]
    photos = [
        http_server.add_bytes(f"/photo/{i}.jpg", photo_jpeg(i), "image/jpeg") for i in range(PHOTOS)
    ]
    results: dict[str, PredictionResult] = {}
    arrived: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    async def sink(item: WorkItem, result: PredictionResult) -> None:
        results[result.id] = result
        arrived[result.id] = loop.time()

    async with Runtime(settings, progress=False) as rt:
        model = asyncio.ensure_future(rt.load_model())
        await model
        pipeline = rt.pipeline(model, sink)
        for i in range(HANGING):
            pipeline.submit(ImageEvent(id=f"hang{i}", url=f"{hang}?n={i}"))
        submitted = loop.time()
        for i, url in enumerate(photos):
            pipeline.submit(ImageEvent(id=f"photo{i}", url=url))

        async def photos_done() -> None:
            while not all(f"photo{i}" in results for i in range(PHOTOS)):
                await asyncio.sleep(0.02)

        await asyncio.wait_for(photos_done(), 90)
        assert rt.fetcher is not None
        hanging_held = rt.fetcher.slots.holding("127.0.0.2")
        hanging_sent = len(served)
        await pipeline.close()

    times = sorted(arrived[f"photo{i}"] - submitted for i in range(PHOTOS))
    median = statistics.median(times)
    assert all(results[f"photo{i}"].status == "ok" for i in range(PHOTOS))
    assert not any(key.startswith("hang") for key in results)  # still hanging meanwhile
    # The hanging host got its share of the download slots, not more.
    assert hanging_sent == settings.fetch_per_host_limit
    assert median < MEDIAN_BOUND_S, times

    record_figures(
        "fair_downloads",
        {
            "hanging_downloads": HANGING,
            "photos": PHOTOS,
            "fetch_concurrency": settings.fetch_concurrency,
            "fetch_per_host": settings.fetch_per_host_limit,
            "fetch_timeout_s": settings.fetch_timeout_s,
            "fetch_deadline_s": settings.fetch_deadline_s,
            "photo_seconds_to_result": {
                "median": round(median, 3),
                "max": round(times[-1], 3),
                "min": round(times[0], 3),
            },
            "hanging_host_tasks_waiting_or_holding": hanging_held,
            "hanging_host_bodies_started": hanging_sent,
        },
    )
