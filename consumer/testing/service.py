"""A `KafkaService` on fakes: the in-memory Kafka, a fake fetcher, decoder and classifier.

kafka = MemoryKafka(default_partitions=2)
member = await MemberRun.start(settings, kafka, FakeFetcher())
...
await member.stop()
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from consumer.clock import Clock
from consumer.config import Settings
from consumer.kafka.service import KafkaService
from consumer.kafka.state import ServiceState
from consumer.metrics import Metrics
from consumer.model import LoadedModel
from consumer.pipeline import Pipeline, PipelineConfig, Sink, StageObserver
from consumer.runtime import Runtime
from consumer.testing.fakes import FakeDecoder, FakeFetcher, fake_model
from consumer.testing.memory_kafka import (
    MemoryConsumer,
    MemoryKafka,
    MemoryProducer,
    memory_clients,
)


class FakeRuntime(Runtime):
    """A `Runtime` whose pipelines fetch with `fetcher` and decode with `FakeDecoder`; its
    thread pools are real. Needs no `async with` (it opens no session)."""

    def __init__(self, settings: Settings, fetcher: FakeFetcher, clock: Clock | None = None):
        super().__init__(settings, progress=False)
        self.fake_fetcher = fetcher
        self.clock = clock

    def pipeline(
        self,
        model: asyncio.Future[LoadedModel] | asyncio.Task[LoadedModel],
        sink: Sink,
        observer: StageObserver | None = None,
    ) -> Pipeline:
        s = self.settings

        async def model_source() -> LoadedModel:
            return await model

        return Pipeline(
            fetcher=self.fake_fetcher,
            decode=FakeDecoder(),
            model=model_source,
            sink=sink,
            decode_pool=self.decode_pool,
            inference_pool=self.inference_pool,
            config=PipelineConfig(
                model_name=s.model_url,
                max_batch_size=s.max_batch_size,
                max_batch_delay_s=s.max_batch_delay_ms / 1000,
                max_undecoded=s.fetch_concurrency,
            ),
            observer=observer,
            clock=self.clock,
        )

    def shutdown(self) -> None:
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.inference_pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class MemberRun:
    """One group member running as a task of the test's event loop."""

    service: KafkaService
    runtime: FakeRuntime
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        settings: Settings,
        kafka: MemoryKafka,
        fetcher: FakeFetcher,
        model: LoadedModel | None = None,
        clock: Clock | None = None,
    ) -> MemberRun:
        runtime = FakeRuntime(settings, fetcher, clock)
        metrics, state = Metrics(), ServiceState(model_loaded=True)
        service = KafkaService(
            settings, runtime, model or fake_model(), metrics, state, memory_clients(kafka)
        )
        await service.start()
        run = cls(service, runtime)
        run.task = asyncio.create_task(service.run(run.stop_event), name="member")
        return run

    @property
    def metrics(self) -> Metrics:
        return self.service.metrics

    @property
    def owned(self) -> frozenset[TopicPartition]:
        return self.service.owned

    @property
    def consumer(self) -> MemoryConsumer:
        assert isinstance(self.service.consumer, MemoryConsumer)
        return self.service.consumer

    @property
    def producer(self) -> MemoryProducer:
        assert isinstance(self.service.producer, MemoryProducer)
        return self.service.producer

    def sample(self, name: str, **labels: str) -> float:
        """A sample of the member's metrics registry (0 when absent)."""
        value = self.metrics.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop; re-raises what `run` raised (e.g. `DeliveryFailedError`)."""
        self.stop_event.set()
        try:
            if self.task is not None:
                await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        finally:
            self.runtime.shutdown()
