"""Preparing images (consumer/pipeline/preparation.py) within the pipeline's memory bounds:
the bodies held while decoding falls behind, the decode budget, the per-host download slots."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from consumer.model import LoadedModel
from consumer.pipeline import Pipeline, PipelineConfig, WorkItem
from consumer.testing import (
    CLASSES,
    FakeClassifier,
    FakeDecoder,
    FakeFetcher,
    decode_marker,
    fake_model,
)
from schemas import ErrorCode, ImageEvent, PredictionResult
from tests.consumer.pipeline.harness import Bare, event


async def test_raw_bytes_held_are_bounded_when_decoding_falls_behind() -> None:
    """At most `max_undecoded` bodies are downloading or waiting for a decode thread."""
    active = {"now": 0, "max": 0}
    lock = threading.Lock()

    class CountingFetcher(FakeFetcher):
        async def fetch(self, url: str) -> bytes:
            with lock:
                active["now"] += 1
                active["max"] = max(active["max"], active["now"])
            return await super().fetch(url)

    def slow_decode(data: bytes) -> NDArray[np.uint8]:
        threading.Event().wait(0.02)
        with lock:
            active["now"] -= 1
        return decode_marker(data)

    results: list[PredictionResult] = []

    async def sink(item: WorkItem, result: PredictionResult) -> None:
        results.append(result)

    async def model() -> LoadedModel:
        return fake_model(FakeClassifier())

    with ThreadPoolExecutor(1) as decode_pool, ThreadPoolExecutor(1) as inference_pool:
        pipeline = Pipeline(
            CountingFetcher(),
            FakeDecoder(slow_decode),
            model,
            sink,
            decode_pool,
            inference_pool,
            PipelineConfig("m", max_batch_size=8, max_undecoded=2),
        )
        for i in range(12):
            pipeline.submit(event(i))
        await asyncio.wait_for(pipeline.drain(), timeout=10)
        await pipeline.close()
    assert len(results) == 12
    assert all(r.status == "ok" for r in results)
    assert active["max"] == 2


async def test_decodes_run_together_only_within_the_memory_budget(
    bare_pipeline: Callable[..., Bare],
) -> None:
    running = {"now": 0, "max": 0}
    lock = threading.Lock()

    def counted_decode(data: bytes) -> NDArray[np.uint8]:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        threading.Event().wait(0.05)
        with lock:
            running["now"] -= 1
        return decode_marker(data)

    config = PipelineConfig("m", max_batch_size=8, decode_budget_bytes=100)
    bare = bare_pipeline(config, FakeDecoder(counted_decode), decode_threads=4)
    for i in range(6):
        bare.pipeline.submit(event(i, f"cls{i % CLASSES}-cost60-{i}"))
    bare.pipeline.submit(event(9, "cls1-cost101"))
    await asyncio.wait_for(bare.pipeline.drain(), timeout=10)

    # Four decode threads, but two 60-byte decodes never fit a 100-byte budget at once.
    assert running["max"] == 1
    assert [bare.results[f"e{i}"].status for i in range(6)] == ["ok"] * 6
    too_big = bare.results["e9"]
    assert too_big.error is not None
    assert too_big.error.code is ErrorCode.TOO_LARGE
    assert "decode memory budget" in too_big.error.message


async def test_small_decodes_share_the_budget(bare_pipeline: Callable[..., Bare]) -> None:
    running = {"now": 0, "max": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(3, timeout=5)

    def counted_decode(data: bytes) -> NDArray[np.uint8]:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        barrier.wait()  # three decodes must be running at once to get past this
        with lock:
            running["now"] -= 1
        return decode_marker(data)

    config = PipelineConfig("m", max_batch_size=8, decode_budget_bytes=100)
    bare = bare_pipeline(config, FakeDecoder(counted_decode), decode_threads=4)
    for i in range(3):
        bare.pipeline.submit(event(i, f"cls{i}-cost30"))
    await asyncio.wait_for(bare.pipeline.drain(), timeout=10)
    assert running["max"] == 3
    assert all(r.status == "ok" for r in bare.results.values())


async def test_a_slow_host_cannot_hold_every_download_slot(
    bare_pipeline: Callable[..., Bare],
) -> None:
    config = PipelineConfig("m", max_batch_size=8, max_undecoded=4, max_undecoded_per_host=2)
    bare = bare_pipeline(config, FakeDecoder())
    loop = asyncio.get_running_loop()
    for i in range(10):  # the slow host's downloads come first and hang
        url = f"http://slow.test/{i}/cls1"
        bare.fetcher.hold(url)
        bare.pipeline.submit(ImageEvent(id=f"slow{i}", url=url))
    started = loop.time()
    for i in range(6):
        bare.pipeline.submit(event(i))

    async def fast_ones_done() -> None:
        while not all(f"e{i}" in bare.results for i in range(6)):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(fast_ones_done(), timeout=5)
    assert max(bare.arrived[f"e{i}"] for i in range(6)) - started < 2
    assert all(bare.results[f"e{i}"].status == "ok" for i in range(6))
    assert not any(key.startswith("slow") for key in bare.results)
