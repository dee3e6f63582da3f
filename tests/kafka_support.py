"""Helpers for the tests that talk to the real Kafka broker.

Each test gets its own topics and group (`unique_names`); records are produced and read with
plain aiokafka clients; `birdwatch serve` runs either in-process (`InProcessService`, so
coverage counts) or as a subprocess (`ServeProcess`, so it can be SIGKILLed). Every wait is
bounded. Topic creation, the subprocess, `free_port`, `wait_until` and `metric_value` are the
benchmarks' own (bench/kafka.py, bench/stats.py), re-exported here.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from bench import kafka as bench_kafka
from bench.kafka import (
    Topics,
    assign_whole_topic,
    create_topics,
    free_port,
    wait_until,
    whole_topic_consumer,
)
from bench.stats import metric_value
from consumer.config import Settings
from consumer.kafka.service import KafkaService, ServiceState
from consumer.metrics import Metrics
from consumer.runtime import Runtime
from tests.conftest import LoopbackServer, TinyModels

# What the Kafka tests use; a few of these come from the benchmarks' modules.
__all__ = [
    "BIRDWATCH",
    "REPO",
    "InProcessService",
    "Names",
    "ServeProcess",
    "TopicReader",
    "committed_offsets",
    "create_service_topics",
    "create_topics",
    "event_value",
    "free_port",
    "metric_value",
    "produce",
    "produce_events",
    "read_topic",
    "results_of",
    "serve_env",
    "serve_model",
    "serve_with_slow_commits",
    "unique_names",
    "wait_until",
]

BIRDWATCH = Path(sys.executable).with_name("birdwatch")
REPO = Path(__file__).resolve().parents[1]


# --- names and topics ------------------------------------------------------------------------


class Names(Topics):
    """Topic and group names private to one test: `settings()` for an in-process service,
    `env()` for a subprocess."""


def unique_names(prefix: str) -> Names:
    suffix = uuid.uuid4().hex[:10]
    return Names(
        input=f"{prefix}-images-{suffix}",
        results=f"{prefix}-results-{suffix}",
        dlq=f"{prefix}-dlq-{suffix}",
        group=f"{prefix}-group-{suffix}",
    )


async def create_service_topics(bootstrap: str, names: Names, partitions: int) -> None:
    await create_topics(bootstrap, names.names, partitions)


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets, as the broker reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items()}


# --- producing and reading -------------------------------------------------------------------


def event_value(event_id: str, url: str) -> bytes:
    return orjson.dumps({"id": event_id, "url": url})


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    partitions: Sequence[int] = (),
) -> int:
    """Produce raw (key, value) records and wait for every ack; returns how many.

    With `partitions`, records go round-robin to those; otherwise by key."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        acks = [
            await producer.send(
                topic,
                value,
                key=key,
                partition=partitions[i % len(partitions)] if partitions else None,
            )
            for i, (key, value) in enumerate(records)
        ]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    return len(acks)


async def produce_events(
    bootstrap: str, topic: str, events: Iterable[tuple[str, str]], partitions: Sequence[int] = ()
) -> int:
    """Produce one ImageEvent per (id, url), keyed by id."""
    return await produce(
        bootstrap,
        topic,
        ((eid.encode(), event_value(eid, url)) for eid, url in events),
        partitions,
    )


class TopicReader:
    """Reads a whole topic from the beginning with a group-less consumer."""

    def __init__(self, bootstrap: str, topic: str, isolation_level: str = "read_uncommitted"):
        self.topic = topic
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._consumer = whole_topic_consumer(bootstrap, isolation_level)
        self._parts: list[TopicPartition] = []

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        self._parts = await assign_whole_topic(self._consumer, self.topic)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> int:
        """Read what is available now; returns how many new records."""
        batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        new = [r for records in batch.values() for r in records]
        self.records.extend(new)
        return len(new)

    async def end_offsets(self) -> dict[TopicPartition, int]:
        """High watermarks, or last stable offsets under read_committed."""
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(self._parts)
        return ends

    async def read_to_end(self, timeout_s: float = 20.0) -> list[ConsumerRecord[bytes, bytes]]:
        """Read until the position of every partition reaches its end offset (taken now)."""
        ends = await self.end_offsets()
        deadline = time.monotonic() + timeout_s
        while True:
            positions = {tp: await self._consumer.position(tp) for tp in self._parts}
            if all(positions[tp] >= end for tp, end in ends.items()):
                return self.records
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: at {positions}, end {ends}")
            await self.poll()

    async def wait_for(
        self, done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool], timeout_s: float
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Read until `done(records)` holds; TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not done(self.records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: condition not met, {len(self.records)} read")
            await self.poll()
        return self.records

    async def wait_for_ids(self, ids: set[str], timeout_s: float) -> list[dict[str, Any]]:
        """Read until every id in `ids` has a result; returns all results read so far."""
        await self.wait_for(lambda recs: ids <= {r["id"] for r in results_of(recs)}, timeout_s)
        return results_of(self.records)


def results_of(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.value is not None]


async def read_topic(
    bootstrap: str, topic: str, isolation_level: str = "read_uncommitted", timeout_s: float = 20
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to its current end."""
    async with TopicReader(bootstrap, topic, isolation_level) as reader:
        return await reader.read_to_end(timeout_s)


# --- the model on the loopback server ----------------------------------------------------------


def serve_model(server: LoopbackServer, models: TinyModels) -> dict[str, str]:
    """Put the tiny tflite model and labels on `server`; returns the settings naming them."""
    server.add_bytes("/model/birds.tflite", models.tflite.read_bytes())
    server.add_bytes("/labels.csv", models.labels_csv, "text/csv")
    return {
        "model_url": server.url("/model/birds.tflite"),
        "labels_url": server.url("/labels.csv"),
    }


# --- the service in this process ----------------------------------------------------------------


@dataclass
class InProcessService:
    """A KafkaService running as a task of the test's event loop."""

    settings: Settings
    runtime: Runtime
    service: KafkaService
    metrics: Metrics
    state: ServiceState
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings) -> InProcessService:
        runtime = Runtime(settings, progress=False)
        await runtime.__aenter__()
        try:
            model = await runtime.load_model()
            metrics, state = Metrics(), ServiceState(model_loaded=True)
            service = KafkaService(settings, runtime, model, metrics, state)
            await asyncio.wait_for(service.start(), 30)
        except BaseException:
            await runtime.__aexit__(None, None, None)
            raise
        me = cls(settings, runtime, service, metrics, state)
        me.task = asyncio.create_task(service.run(me.stop_event))
        return me

    @property
    def owned(self) -> set[TopicPartition]:
        return set(self.service._owned)

    def count(self, status: str) -> float:
        return self.metrics.results_produced.labels(status)._value.get()  # type: ignore[no-any-return]

    async def stop(self, timeout_s: float = 60.0) -> float:
        """Graceful stop (what SIGTERM does); returns the seconds it took."""
        start = time.monotonic()
        self.stop_event.set()
        try:
            if self.task is not None:
                await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        finally:
            await self.runtime.__aexit__(None, None, None)
        return time.monotonic() - start


# --- the service as a subprocess -----------------------------------------------------------------


def serve_env(
    bootstrap: str, names: Names, model: Mapping[str, str], **extra: object
) -> dict[str, str]:
    """Environment for `birdwatch serve` (without BIRDWATCH_HTTP_PORT, added by ServeProcess)."""
    values: dict[str, object] = {
        "kafka_bootstrap_servers": bootstrap,
        "allow_private_networks": "true",
        "model_cache_dir": "",
        "inference_threads": 1,
        "decode_threads": 1,
        "log_format": "json",
        **model,
        **names.settings(),
        **extra,
    }
    return {f"BIRDWATCH_{k.upper()}": str(v) for k, v in values.items()}


def serve_with_slow_commits(delay_s: float) -> None:
    """Child-process entry point: `birdwatch serve` whose transactions each stay open `delay_s`
    longer, their results already written, before the commit is sent (a slow client)."""
    real_commit = AIOKafkaProducer.commit_transaction

    async def commit_later(self: AIOKafkaProducer) -> None:
        await asyncio.sleep(delay_s)
        await real_commit(self)

    AIOKafkaProducer.commit_transaction = commit_later
    from consumer import cli

    sys.exit(cli.main(["serve"]))


class ServeProcess(bench_kafka.ServeProcess):
    """`birdwatch serve` in a child process, logs to a file, endpoints on a free port; with
    `slow_commits_s`, every transaction of it stays open that much longer before its commit."""

    ready_timeout_s = 60.0

    def __init__(
        self, env: Mapping[str, str], log_path: Path, slow_commits_s: float | None = None
    ) -> None:
        if slow_commits_s is None:
            super().__init__(env, log_path)
            return
        code = f"from tests.kafka_support import serve_with_slow_commits as s; s({slow_commits_s})"
        path = env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))
        super().__init__(
            {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), path]))},
            log_path,
            command=[sys.executable, "-c", code],
        )
