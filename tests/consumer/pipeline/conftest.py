"""Fixtures of the pipeline tests: `make_pipeline` (fake clock) and `bare_pipeline`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from consumer.model import LoadedModel
from consumer.pipeline import Pipeline, PipelineConfig, WorkItem
from consumer.testing import FakeClassifier, FakeClock, FakeDecoder, FakeFetcher, fake_model
from schemas import PredictionResult
from tests.consumer.pipeline.harness import Bare, Harness, Stages


@pytest.fixture
async def make_pipeline() -> AsyncIterator[Callable[..., Harness]]:
    pools: list[ThreadPoolExecutor] = []
    pipelines: list[Pipeline] = []

    def build(
        max_batch_size: int = 4,
        max_batch_delay_s: float = 0.05,
        model_waits: bool = False,
        model_error: Exception | None = None,
        classifier: FakeClassifier | None = None,
        background_id: int | None = None,
    ) -> Harness:
        results: list[tuple[WorkItem, PredictionResult]] = []
        clf = classifier or FakeClassifier()
        clock = FakeClock()
        fetcher = FakeFetcher(clock)
        stages = Stages()
        model_gate = asyncio.Event()
        if not model_waits:
            model_gate.set()

        async def model() -> LoadedModel:
            await model_gate.wait()
            if model_error is not None:
                raise model_error
            return fake_model(clf, background_id=background_id)

        async def sink(item: WorkItem, result: PredictionResult) -> None:
            results.append((item, result))

        decode_pool = ThreadPoolExecutor(2, "decode")
        inference_pool = ThreadPoolExecutor(1, "inference")
        pools.extend([decode_pool, inference_pool])
        pipeline = Pipeline(
            fetcher,
            FakeDecoder(),
            model,
            sink,
            decode_pool,
            inference_pool,
            PipelineConfig("fake-model", max_batch_size, max_batch_delay_s),
            observer=stages,
            clock=clock,
        )
        pipelines.append(pipeline)
        return Harness(pipeline, results, clf, fetcher, clock, stages, model_gate)

    yield build
    for p in pipelines:
        await p.close()
    for pool in pools:
        pool.shutdown()


@pytest.fixture
async def bare_pipeline() -> AsyncIterator[Callable[..., Bare]]:
    made: list[tuple[Pipeline, ThreadPoolExecutor, ThreadPoolExecutor]] = []

    def build(config: PipelineConfig, decoder: FakeDecoder, decode_threads: int = 2) -> Bare:
        decode_pool = ThreadPoolExecutor(decode_threads, "decode")
        inference_pool = ThreadPoolExecutor(1, "inference")
        loop = asyncio.get_running_loop()

        async def model() -> LoadedModel:
            return fake_model(FakeClassifier())

        async def sink(item: WorkItem, result: PredictionResult) -> None:
            bare.results[result.id] = result
            bare.arrived[result.id] = loop.time()

        fetcher = FakeFetcher()
        pipeline = Pipeline(fetcher, decoder, model, sink, decode_pool, inference_pool, config)
        bare = Bare(pipeline, fetcher)
        made.append((pipeline, decode_pool, inference_pool))
        return bare

    yield build
    for pipeline, decode_pool, inference_pool in made:
        await pipeline.close()
        decode_pool.shutdown(cancel_futures=True)
        inference_pool.shutdown()
