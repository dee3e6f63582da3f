"""Exactly-once delivery when the transaction fails: pure logic against a stand-in producer.

The end-to-end behaviour (a fenced member stops, its replacement takes over) is tested against
the real broker in test_service_faults.py; this checks what that test cannot see.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced

from consumer.kafka.delivery import DeliveryFailedError, ExactlyOnceDelivery
from consumer.kafka.outcome_guard import OutcomeGuard, RecordLimits
from consumer.kafka.outcomes import Outcome, RecordRef
from consumer.metrics import Metrics

TP = TopicPartition("images", 0)


class FencedProducer:
    """Takes records into a transaction and fails each of them, then the transaction, as aiokafka
    does when a newer producer took the transactional id (the broker answers every produce
    request with InvalidProducerEpoch)."""

    def __init__(self) -> None:
        self.sent = 0

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield
        raise ProducerFenced()

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        self.sent += 1
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(ack.set_exception, ProducerFenced())
        return ack

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        return None

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}


async def no_topic_is_missing(topic: str) -> bool:
    return False


class AsyncioErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_a_fenced_transaction_fails_every_commit_and_leaves_no_unseen_future() -> None:
    producer = FencedProducer()
    metrics = Metrics()
    guard = OutcomeGuard(RecordLimits(1_048_576), "dlq", "model", metrics)
    delivery = ExactlyOnceDelivery(producer, "group", metrics, guard, no_topic_is_missing)
    for offset in range(3):
        delivery.tracker.received(TP, offset)
        await delivery.deliver(Outcome(RecordRef(TP, offset), "results", None, b"{}", "ok"))

    with pytest.raises(DeliveryFailedError, match="ProducerFenced"):
        await delivery.commit()
    with pytest.raises(DeliveryFailedError):
        await delivery.commit()  # and on every call after, without trying again
    assert producer.sent == 3
    assert delivery.pending() == 3  # nothing counted as delivered
    assert metrics.outcomes_total == 0

    errors = AsyncioErrors()
    logging.getLogger("asyncio").addHandler(errors)
    try:
        await asyncio.sleep(0)  # the done-callbacks run
        del delivery, producer
        gc.collect()
    finally:
        logging.getLogger("asyncio").removeHandler(errors)
    # Left unseen, each record's future is reported by asyncio when collected: noise in the
    # logs, and a traceback formatted from inside whatever code the collector interrupted.
    assert not [m for m in errors.messages if "never retrieved" in m]
