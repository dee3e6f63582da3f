"""Topics on a real broker for one test or benchmark run: names, creation, producing events
and reading a whole topic back. Every wait is bounded."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

Records = list[ConsumerRecord[bytes, bytes]]


@dataclass(frozen=True)
class Topics:
    """Topic and group names private to one run: `settings()` for an in-process service,
    `env()` for a `birdwatch serve` process."""

    input: str
    results: str
    dlq: str
    group: str

    @classmethod
    def unique(cls, prefix: str) -> Topics:
        tag = uuid.uuid4().hex[:10]
        return cls(
            f"{prefix}-images-{tag}",
            f"{prefix}-results-{tag}",
            f"{prefix}-dlq-{tag}",
            f"{prefix}-group-{tag}",
        )

    @property
    def names(self) -> tuple[str, str, str]:
        """The three topics."""
        return self.input, self.results, self.dlq

    def settings(self) -> dict[str, object]:
        """Settings overrides naming these topics and this group."""
        return {
            "input_topic": self.input,
            "results_topic": self.results,
            "dlq_topic": self.dlq,
            "group_id": self.group,
        }

    def env(self) -> dict[str, str]:
        """The same, as the environment of a `birdwatch serve`."""
        return {f"BIRDWATCH_{k.upper()}": str(v) for k, v in self.settings().items()}


async def create_topics(
    bootstrap: str, topics: Iterable[str], partitions: int, timeout_s: float = 30.0
) -> None:
    """Create `topics` and wait until every partition has a leader."""
    wanted = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in wanted])
        deadline = time.monotonic() + timeout_s
        while True:
            described = await admin.describe_topics(wanted)
            if all(
                d["error_code"] == 0
                and len(d["partitions"]) == partitions
                and all(p["leader"] >= 0 for p in d["partitions"])
                for d in described
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not ready: {described}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets, as the broker reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items()}


# --- producing ----------------------------------------------------------------------------


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


# --- reading ------------------------------------------------------------------------------


def whole_topic_consumer(bootstrap: str, isolation_level: str) -> AIOKafkaConsumer:
    """A consumer outside any group that commits nothing: for `assign_whole_topic`."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )


async def assign_whole_topic(
    consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 20.0
) -> list[TopicPartition]:
    """Assign every partition of `topic` to a started `whole_topic_consumer`, from the
    beginning, once its metadata is known; returns the partitions."""
    deadline = time.monotonic() + timeout_s
    while not (parts := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no metadata for {topic}")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return tps


class TopicReader:
    """Reads a whole topic from the beginning with a group-less consumer."""

    def __init__(self, bootstrap: str, topic: str, isolation_level: str = "read_uncommitted"):
        self.topic = topic
        self.records: Records = []
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

    async def read_to_end(self, timeout_s: float = 20.0) -> Records:
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

    async def wait_for(self, done: Callable[[Records], bool], timeout_s: float) -> Records:
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
    """The JSON values of `records` (tombstones left out)."""
    return [orjson.loads(r.value) for r in records if r.value is not None]


async def read_topic(
    bootstrap: str, topic: str, isolation_level: str = "read_uncommitted", timeout_s: float = 20
) -> Records:
    """Every record of `topic` up to its current end."""
    async with TopicReader(bootstrap, topic, isolation_level) as reader:
        return await reader.read_to_end(timeout_s)
