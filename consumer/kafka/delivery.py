"""Delivery guarantees: how outcomes reach Kafka and when input offsets are committed.

At-least-once: produce each outcome at once (acks=all, idempotent); an outcome is finished when
acknowledged; commit the contiguous finished prefix. Exactly-once: keep finished outcomes until
the commit step, then put them and their offsets in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol

import stamina
import structlog
from aiokafka import TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.structs import OffsetAndMetadata

from consumer.kafka.clients import GroupConsumer, Producer
from consumer.kafka.offsets import OffsetTracker
from consumer.kafka.outcomes import Outcome
from consumer.metrics import Metrics

log = structlog.get_logger(__name__)

# After these the transactional producer can do nothing more (aiokafka stops its sender).
_FATAL_PRODUCER_ERRORS = (
    ProducerFenced,
    OutOfOrderSequenceNumber,
    TransactionalIdAuthorizationFailed,
)


class DeliveryFailedError(KafkaError):  # type: ignore[misc]
    """The producer can deliver nothing more (e.g. it was fenced); the member must restart."""


class Delivery(Protocol):
    tracker: OffsetTracker[TopicPartition]

    async def deliver(self, outcome: Outcome) -> None: ...

    async def commit(self) -> None: ...

    def pending(self) -> int:
        """Outcomes finished but not yet durable: they still count against the in-flight bound."""
        ...

    async def close(self) -> None: ...

    def forget(self, partitions: Iterable[TopicPartition]) -> None: ...


def _count(metrics: Metrics, outcome: Outcome) -> None:
    metrics.count_outcome(outcome.kind)


class AtLeastOnceDelivery:
    """Produce now, finish on ack, commit the finished prefix; resend until acknowledged."""

    def __init__(self, producer: Producer, consumer: GroupConsumer, metrics: Metrics) -> None:
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._producer = producer
        self._consumer = consumer
        self._metrics = metrics
        self._acks: set[asyncio.Task[None]] = set()
        # One commit at a time: a stale offset list committed last would move the offset back.
        self._lock = asyncio.Lock()

    async def deliver(self, outcome: Outcome) -> None:
        task = asyncio.create_task(self._send_until_acked(outcome))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    @property
    def sending(self) -> int:
        """Outcomes produced (or being resent) whose acknowledgement has not come yet."""
        return len(self._acks)

    async def _send_until_acked(self, outcome: Outcome) -> None:
        ref = outcome.ref
        # Kafka errors are resent without end while the record is ours: its offset is not
        # committed before the outcome is acknowledged, so giving up would lose it.
        async for attempt in stamina.retry_context(
            on=KafkaError,
            attempts=None,
            timeout=None,
            wait_initial=0.2,
            wait_max=10.0,
            wait_jitter=0.2,
        ):
            with attempt:
                if not self.tracker.is_unfinished(ref.tp, ref.offset):
                    return  # the partition was revoked meanwhile
                try:
                    ack = await self._producer.send(
                        outcome.topic, outcome.value, key=outcome.key, headers=outcome.headers
                    )
                    await ack
                except KafkaError as exc:
                    log.warning(
                        "produce_retry",
                        topic=outcome.topic,
                        partition=ref.tp.partition,
                        offset=ref.offset,
                        attempt=attempt.num,
                        error=type(exc).__name__,
                    )
                    raise
        self.tracker.finished(ref.tp, ref.offset)
        _count(self._metrics, outcome)

    async def commit(self) -> None:
        async with self._lock:
            offsets = self.tracker.committable()
            if not offsets:
                return
            commit = {tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()}
            try:
                await self._consumer.commit(commit)
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions; their next owner redoes the uncommitted records.
                log.warning("commit_failed", error=type(exc).__name__, detail=str(exc))
                return
            self.tracker.mark_committed(offsets)
        log.debug(
            "committed", offsets={f"{tp.topic}-{tp.partition}": o for tp, o in offsets.items()}
        )

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        self.tracker.forget(partitions)

    def pending(self) -> int:
        return 0  # an outcome is finished once acknowledged, i.e. durable

    async def close(self) -> None:
        for task in list(self._acks):
            task.cancel()
        await asyncio.gather(*self._acks, return_exceptions=True)


class ExactlyOnceDelivery:
    """One transaction per commit step holding the finished outcomes and their offsets."""

    def __init__(self, producer: Producer, group_id: str, metrics: Metrics) -> None:
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._producer = producer
        self._group_id = group_id
        self._metrics = metrics
        self._ready: dict[TopicPartition, dict[int, Outcome]] = {}
        self._lock = asyncio.Lock()
        self._failed: DeliveryFailedError | None = None

    async def deliver(self, outcome: Outcome) -> None:
        ref = outcome.ref
        if not self.tracker.is_unfinished(ref.tp, ref.offset):
            return  # the partition was revoked meanwhile
        self._ready.setdefault(ref.tp, {})[ref.offset] = outcome
        self.tracker.finished(ref.tp, ref.offset)

    async def commit(self) -> None:
        """Commit the finished prefix in one transaction; raises `DeliveryFailedError` once the
        producer is unusable (then on every call)."""
        async with self._lock:
            if self._failed is not None:
                raise self._failed
            offsets = self.tracker.committable()
            if not offsets:
                return
            batch: list[Outcome] = []
            for tp, safe in offsets.items():
                batch.extend(o for off, o in sorted(self._ready.get(tp, {}).items()) if off < safe)
            try:
                await self._transact(batch, offsets)
            except _FATAL_PRODUCER_ERRORS as exc:
                # Fenced by a newer producer with our transactional id, or our transaction
                # outlived transaction_timeout_ms: this producer may not write again.
                self._failed = DeliveryFailedError(str(exc))
                raise self._failed from exc
            except KafkaError as exc:
                log.warning(
                    "transaction_failed",
                    error=type(exc).__name__,
                    detail=str(exc),
                    outcomes=len(batch),
                )
                return
            for outcome in batch:
                self._ready[outcome.ref.tp].pop(outcome.ref.offset, None)
                _count(self._metrics, outcome)
            self.tracker.mark_committed(offsets)

    async def _transact(self, batch: list[Outcome], offsets: dict[TopicPartition, int]) -> None:
        acks: list[asyncio.Future[Any]] = []
        try:
            async with self._producer.transaction():
                for o in batch:
                    acks.append(
                        await self._producer.send(o.topic, o.value, key=o.key, headers=o.headers)
                    )
                await self._producer.send_offsets_to_transaction(
                    {tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()}, self._group_id
                )
        finally:
            # The transaction's outcome is what counts; a failed one fails every record's
            # future too, which asyncio would otherwise report one by one when collected.
            for ack in acks:
                ack.add_done_callback(_seen)
        log.debug("transaction_committed", outcomes=len(batch), partitions=len(offsets))

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        parts = list(partitions)
        for tp in parts:
            self._ready.pop(tp, None)
        self.tracker.forget(parts)

    def pending(self) -> int:
        return sum(len(outcomes) for outcomes in self._ready.values())

    async def close(self) -> None:
        return None


def _seen(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
