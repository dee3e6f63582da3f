"""Both delivery strategies against the in-memory Kafka: resends, revocations, transactions.

The end-to-end behaviour (a fenced member stops, its replacement takes over) is tested against
the real broker in test_service_faults.py; this checks what that test cannot see.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator

import pytest
import stamina
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, RequestTimedOutError

from consumer.kafka.delivery import AtLeastOnceDelivery, DeliveryFailedError, ExactlyOnceDelivery
from consumer.kafka.outcome_guard import OutcomeGuard, RecordLimits
from consumer.kafka.outcomes import Outcome, RecordRef
from consumer.metrics import Metrics
from consumer.testing import MemoryConsumer, MemoryKafka, MemoryProducer, wait_until

TP = TopicPartition("images", 0)
GROUP = "group"


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    with stamina.set_testing(True, attempts=10_000):
        yield


def outcome(offset: int) -> Outcome:
    return Outcome(RecordRef(TP, offset), "results", f"k{offset}".encode(), b"{}", "ok")


async def member(kafka: MemoryKafka) -> MemoryConsumer:
    """A started member that owns `TP`."""

    class Listener:
        async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            return None

        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            return None

    consumer = MemoryConsumer(kafka, group_id=GROUP)
    consumer.subscribe([TP.topic], listener=Listener())
    await consumer.start()
    await kafka.group(GROUP).settled()
    assert consumer.assignment() == {TP}
    return consumer


def guard(metrics: Metrics) -> OutcomeGuard:
    return OutcomeGuard(RecordLimits(1_048_576), "dlq", "model", metrics)


async def no_topic_is_missing(topic: str) -> bool:
    return False


async def producer(kafka: MemoryKafka, **options: object) -> MemoryProducer:
    made = MemoryProducer(kafka, **options)
    await made.start()
    return made


async def test_at_least_once_resends_until_acknowledged_then_commits() -> None:
    kafka = MemoryKafka()
    metrics = Metrics()
    delivery = AtLeastOnceDelivery(
        await producer(kafka), await member(kafka), metrics, guard(metrics), no_topic_is_missing
    )
    kafka.fail_sends(RequestTimedOutError(), times=2)
    kafka.fail_sends(KafkaConnectionError(), times=1)
    for offset in range(2):
        delivery.tracker.received(TP, offset)
    await delivery.deliver(outcome(0))
    await delivery.deliver(outcome(1))
    await wait_until(lambda: delivery.sending == 0, 5, "both acknowledged", step=0.005)

    assert kafka.send_attempts == 5  # three failed attempts, then one per outcome
    assert sorted(r.key for r in kafka.records("results")) == [b"k0", b"k1"]
    assert metrics.registry.get_sample_value("birdwatch_results_produced_total", {"status": "ok"})
    assert metrics.outcomes_total == 2
    await delivery.commit()
    assert kafka.committed(GROUP) == {TP: 2}
    await delivery.commit()  # nothing new: no second commit
    assert len(kafka.commits) == 1


async def test_at_least_once_stops_resending_once_the_partition_is_revoked() -> None:
    kafka = MemoryKafka()
    metrics = Metrics()
    delivery = AtLeastOnceDelivery(
        await producer(kafka), await member(kafka), metrics, guard(metrics), no_topic_is_missing
    )
    kafka.fail_sends(RequestTimedOutError(), times=1_000_000)
    delivery.tracker.received(TP, 0)
    await delivery.deliver(outcome(0))
    await wait_until(lambda: kafka.send_attempts >= 3, 5, "a few attempts", step=0.005)

    delivery.forget([TP])
    await wait_until(lambda: delivery.sending == 0, 5, "the resends to stop", step=0.005)
    attempts = kafka.send_attempts
    await asyncio.sleep(0.01)
    assert kafka.send_attempts == attempts
    assert kafka.records("results") == []
    assert metrics.outcomes_total == 0
    await delivery.commit()
    assert kafka.commits == []  # nothing left to commit for a partition no longer ours


async def test_at_least_once_keeps_offsets_when_a_commit_fails() -> None:
    kafka = MemoryKafka()
    metrics = Metrics()
    delivery = AtLeastOnceDelivery(
        await producer(kafka), await member(kafka), metrics, guard(metrics), no_topic_is_missing
    )
    delivery.tracker.received(TP, 0)
    await delivery.deliver(outcome(0))
    await wait_until(lambda: delivery.sending == 0, 5, "the ack", step=0.005)
    kafka.fail_commits(RequestTimedOutError())
    await delivery.commit()
    assert kafka.committed(GROUP) == {}
    await delivery.commit()  # the same offsets again
    assert kafka.committed(GROUP) == {TP: 1}


async def test_exactly_once_puts_a_step_in_one_transaction_with_its_offsets() -> None:
    kafka = MemoryKafka()
    metrics = Metrics()
    made = await producer(kafka, transactional_id="tid")
    delivery = ExactlyOnceDelivery(made, GROUP, metrics, guard(metrics), no_topic_is_missing)
    for offset in range(4):
        delivery.tracker.received(TP, offset)
    for offset in (0, 1, 3):  # offset 2 unfinished
        await delivery.deliver(outcome(offset))
    assert delivery.pending() == 3

    await delivery.commit()
    [txn] = kafka.transactions
    assert txn.state == "committed"
    assert len(txn.records) == 2  # the prefix 0-1 only
    assert txn.offsets == {TP: 2}
    assert kafka.committed(GROUP) == {TP: 2}
    assert [c.transactional for c in kafka.commits] == [True]
    assert delivery.pending() == 1
    assert metrics.outcomes_total == 2

    await delivery.deliver(outcome(2))
    await delivery.commit()
    assert [len(t.records) for t in kafka.transactions] == [2, 2]
    assert kafka.committed(GROUP) == {TP: 4}
    assert [r.key for r in kafka.records("results")] == [b"k0", b"k1", b"k2", b"k3"]


async def test_exactly_once_aborts_a_failed_transaction_and_retries_it_next_step() -> None:
    kafka = MemoryKafka()
    made, metrics = await producer(kafka, transactional_id="tid"), Metrics()
    delivery = ExactlyOnceDelivery(made, GROUP, metrics, guard(metrics), no_topic_is_missing)
    delivery.tracker.received(TP, 0)
    await delivery.deliver(outcome(0))
    kafka.fail_transactions(RequestTimedOutError())

    await delivery.commit()
    assert [t.state for t in kafka.transactions] == ["aborted"]
    assert kafka.records("results") == []  # read_committed sees nothing of it
    assert len(kafka.records("results", read_committed=False)) == 1
    assert kafka.committed(GROUP) == {}
    assert delivery.pending() == 1

    await delivery.commit()
    assert [t.state for t in kafka.transactions] == ["aborted", "committed"]
    assert len(kafka.records("results")) == 1
    assert kafka.committed(GROUP) == {TP: 1}


class AsyncioErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_a_fenced_transaction_fails_every_commit_and_leaves_no_unseen_future() -> None:
    kafka = MemoryKafka()
    metrics = Metrics()
    made = await producer(kafka, transactional_id="tid")
    delivery = ExactlyOnceDelivery(made, GROUP, metrics, guard(metrics), no_topic_is_missing)
    for offset in range(3):
        delivery.tracker.received(TP, offset)
        await delivery.deliver(outcome(offset))
    kafka.fence("tid")  # a newer producer with our transactional id started

    with pytest.raises(DeliveryFailedError, match="ProducerFenced"):
        await delivery.commit()
    with pytest.raises(DeliveryFailedError):
        await delivery.commit()  # and on every call after, without trying again
    assert made.sent == 3
    assert len(kafka.transactions) == 1
    assert delivery.pending() == 3  # nothing counted as delivered
    assert metrics.outcomes_total == 0
    assert kafka.committed(GROUP) == {}

    errors = AsyncioErrors()
    logging.getLogger("asyncio").addHandler(errors)
    try:
        await asyncio.sleep(0)  # the done-callbacks run
        del delivery, made
        gc.collect()
    finally:
        logging.getLogger("asyncio").removeHandler(errors)
    # Left unseen, each record's future is reported by asyncio when collected: noise in the
    # logs, and a traceback formatted from inside whatever code the collector interrupted.
    assert not [m for m in errors.messages if "never retrieved" in m]
