"""The Kafka side of the stream scenarios: a paced publisher, a result reader, consumer-group
state and the stage histograms of a `birdwatch serve`. The pieces tests share (the broker,
topics, `ServeProcess`, waits) come from the test kit, `consumer.testing`. Every wait is
bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.common import Backend, BenchContext
from bench.stats import HistogramSnapshot, parse_histograms
from consumer.testing.broker import ScriptBroker
from consumer.testing.serve import ServeProcess
from consumer.testing.topics import Topics, assign_whole_topic, whole_topic_consumer

# --- topics and groups -----------------------------------------------------------------------


async def delete_topics(bootstrap: str, topics: Topics) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(Exception):
            await admin.delete_topics(list(topics.names))
    finally:
        await admin.close()


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, member count) of a consumer group, as the coordinator reports it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in responses:
        for described in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members, ...)
            return str(described[2]), len(described[5])
    return "Unknown", 0


async def wait_group_stable(bootstrap: str, group: str, members: int, timeout_s: float) -> float:
    """Wait until the group is Stable with `members` members; returns the seconds waited."""
    start = time.monotonic()
    while True:
        state, count = await group_members(bootstrap, group)
        if state == "Stable" and count == members:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"group {group}: {state} with {count} members, want {members}")
        await asyncio.sleep(0.25)


# --- publishing and reading --------------------------------------------------------------------


@dataclass
class Sent:
    """When each event id was handed to the producer (epoch seconds)."""

    at: dict[str, float] = field(default_factory=dict)


class Publisher:
    """Publishes ImageEvents, in a burst or at a steady rate, remembering when each was sent."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2)
        self.sent = Sent()

    async def __aenter__(self) -> Publisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def _send(self, event_id: str, url: str) -> None:
        self.sent.at[event_id] = time.time()
        value = orjson.dumps({"id": event_id, "url": url})
        await self._producer.send(self._topic, value, key=event_id.encode())

    async def burst(self, urls: Sequence[str], count: int, prefix: str) -> list[str]:
        """Publish `count` events as fast as possible, cycling through `urls`."""
        ids = [f"{prefix}-{i}" for i in range(count)]
        for i, event_id in enumerate(ids):
            await self._send(event_id, urls[i % len(urls)])
        await self._producer.flush()
        return ids

    async def steady(self, urls: Sequence[str], rate: float, count: int, prefix: str) -> list[str]:
        """Publish `count` events at `rate` per second (on an absolute schedule, so a late send
        does not shift the ones after it)."""
        ids = [f"{prefix}-{i}" for i in range(count)]
        start = time.perf_counter()
        for i, event_id in enumerate(ids):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._send(event_id, urls[i % len(urls)])
        await self._producer.flush()
        return ids


@dataclass(frozen=True)
class Received:
    status: str
    produced_ms: int  # the result record's timestamp: when the service produced it
    read_at: float


class ResultReader:
    """Reads the results topic in the background from its beginning: the first result of each
    event id, and how many more came (redeliveries)."""

    def __init__(
        self, bootstrap: str, topic: str, isolation_level: str = "read_uncommitted"
    ) -> None:
        self._topic = topic
        self._consumer = whole_topic_consumer(bootstrap, isolation_level)
        self.results: dict[str, Received] = {}
        self.duplicates = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ResultReader:
        await self._consumer.start()
        await assign_whole_topic(self._consumer, self._topic)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for record in records:
                    if record.value is None:
                        continue
                    result = orjson.loads(record.value)
                    event_id = str(result["id"])
                    if event_id in self.results:
                        self.duplicates += 1
                    else:
                        self.results[event_id] = Received(
                            str(result["status"]), record.timestamp, now
                        )

    async def wait_for(self, ids: Sequence[str], timeout_s: float) -> float:
        """Wait until every id has a result; returns the seconds waited (TimeoutError after)."""
        start = time.monotonic()
        while not all(i in self.results for i in ids):
            if time.monotonic() - start > timeout_s:
                missing = sum(i not in self.results for i in ids)
                raise TimeoutError(f"{missing} of {len(ids)} results missing after {timeout_s} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - start


# --- the service ------------------------------------------------------------------------------


def service_env(
    ctx: BenchContext, backend: Backend, topics: Topics, cache_dir: str, *, shutdown_timeout_s: int
) -> dict[str, str]:
    """What a scenario's `birdwatch serve` runs with: the site's model and labels, the run's own
    topics and group, the broker, a private model cache and a bounded shutdown."""
    assert ctx.bootstrap is not None
    return {
        **ctx.site.service_env(backend),
        **topics.env(),
        "BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS": ctx.bootstrap,
        "BIRDWATCH_MODEL_CACHE_DIR": cache_dir,
        "BIRDWATCH_SHUTDOWN_TIMEOUT_S": str(shutdown_timeout_s),
    }


def broker_pid() -> int | None:
    """The pid of the `scripts/kafka` broker, when it runs here (to read its CPU time)."""
    return ScriptBroker().pid()


async def histograms(serve: ServeProcess) -> dict[str, dict[str, HistogramSnapshot]]:
    """The stage-latency and batch-size histograms of a service's /metrics, right now."""
    _, text = await serve.get("/metrics")
    return {
        "stage": parse_histograms(text, "birdwatch_stage_seconds", "stage"),
        "batch": parse_histograms(text, "birdwatch_batch_size", "stage"),
    }
