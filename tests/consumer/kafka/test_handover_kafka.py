"""Handover between two service members on the real broker, under a steady stream.

Both members are static (`instance_id` set, as in the Deployment) with the Deployment's 30 s
session timeout, so a handover within 5 s can only come from the explicit leave. Per-event
latency is measured as the Deployment's harness does: the result's Kafka timestamp minus the
input's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from consumer.testing.topics import TopicReader, event_value
from consumer.testing.waiting import wait_until
from tests.conftest import LoopbackServer
from tests.consumer.service_support import ServiceSetup, ServiceSetupFactory, red_image
from tests.kafka_support import InProcessService

pytestmark = pytest.mark.kafka

PARTITIONS = 6
SESSION_TIMEOUT_MS = 30_000
HANDOVER_LIMIT_S = 5.0


@dataclass
class SteadyStream:
    """Publishes one event every `period_s` to the partitions in turn, remembering when."""

    setup: ServiceSetup
    url: str
    period_s: float = 0.025
    sent: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (partition, at)
    _task: asyncio.Task[None] | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.setup.bootstrap, acks="all")
        await producer.start()
        try:
            n = 0
            while not self._stopping.is_set():
                event_id = f"steady-{n}"
                partition = n % PARTITIONS
                at = time.time()
                await producer.send_and_wait(
                    self.setup.names.input,
                    event_value(event_id, self.url),
                    key=event_id.encode(),
                    partition=partition,
                    timestamp_ms=int(at * 1000),
                )
                self.sent[event_id] = (partition, at)
                n += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.period_s)
        finally:
            await producer.stop()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop after the event being sent (every event in `sent` was acknowledged)."""
        self._stopping.set()
        if self._task is not None:
            await self._task


async def read_results(
    setup: ServiceSetup, ids: set[str], isolation: str
) -> tuple[Counter[str], dict[str, float]]:
    """Read results until every id has one: how many each id got, and the Kafka timestamp
    (epoch seconds) of its first result."""
    async with TopicReader(setup.bootstrap, setup.names.results, isolation) as reader:
        await reader.wait_for_ids(ids, timeout_s=60)
        records = await reader.read_to_end()
    counts: Counter[str] = Counter()
    first_at: dict[str, float] = {}
    for record in records:
        result_id = orjson.loads(record.value)["id"]
        counts[result_id] += 1
        first_at.setdefault(result_id, record.timestamp / 1000)
    return counts, first_at


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_a_member_stopping_gracefully_hands_its_partitions_over_within_5_s(
    guarantee: str, service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    setup = await service_setup("handover", partitions=PARTITIONS)
    url = red_image(http_server)
    tuning = {
        "processing_guarantee": guarantee,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": 1000,
    }
    leaving = await InProcessService.start(setup.settings(instance_id="pod-a", **tuning))
    staying = await InProcessService.start(setup.settings(instance_id="pod-b", **tuning))
    stream = SteadyStream(setup, url)
    leaving_running = True
    try:
        await wait_until(
            lambda: len(leaving.owned) == len(staying.owned) == PARTITIONS // 2,
            30,
            "both members to own 3 partitions",
        )
        stream.start()
        await asyncio.sleep(2)
        moved = leaving.owned
        assert leaving.state.ready
        stop_at = time.time()
        started = time.monotonic()
        await leaving.stop()
        leaving_running = False
        assert not leaving.state.ready
        await wait_until(lambda: len(staying.owned) == PARTITIONS, HANDOVER_LIMIT_S, "the handover")
        handover_s = time.monotonic() - started
        await asyncio.sleep(3)  # the stream goes on on the moved partitions
    finally:
        await stream.stop()
        if leaving_running:
            await leaving.stop()
        await staying.stop()

    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    counts, first_at = await read_results(setup, set(stream.sent), isolation)
    # Nothing lost, and with exactly-once nothing a read_committed reader sees twice.
    assert set(counts) == set(stream.sent)
    if guarantee == "exactly_once":
        assert set(counts.values()) == {1}
    moved_partitions = {tp.partition for tp in moved}
    around_stop = {
        eid: first_at[eid] - at
        for eid, (partition, at) in stream.sent.items()
        if partition in moved_partitions and at >= stop_at - 1
    }
    assert around_stop, "events were published on the moved partitions around the stop"
    worst = max(around_stop.values())
    print(f"{guarantee}: handover {handover_s:.2f} s, worst wait on moved partitions {worst:.2f} s")
    assert worst < HANDOVER_LIMIT_S
    assert {TopicPartition(setup.names.input, p) for p in moved_partitions} == moved
