"""Delivery guarantees: how outcomes reach Kafka and when input offsets are committed.

At-least-once: produce each outcome at once (acks=all, idempotent); an outcome is finished when
acknowledged; commit the contiguous finished prefix. Exactly-once: keep finished outcomes until
the commit step, then put them and their offsets in one transaction.

Both resend what may heal (an outage) and never resend what cannot (consumer/kafka/
produce_errors.py): an outcome is fitted under its topic's record limit before it is sent, and
one Kafka refuses for good is replaced by a smaller stand-in (consumer/kafka/outcome_guard.py),
so no record stalls its partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

import stamina
import structlog
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from consumer.kafka.clients import GroupConsumer, Producer
from consumer.kafka.exactly_once import ExactlyOnceDelivery
from consumer.kafka.offsets import OffsetTracker
from consumer.kafka.outcome_guard import OutcomeGuard
from consumer.kafka.outcomes import Outcome, source_of
from consumer.kafka.produce_errors import (
    DeliveryFailedError,
    Refused,
    TopicMissing,
    Verdict,
    describe,
    log_refusal,
    verdict_on,
)
from consumer.kafka.traced import abandoned, durable, traced
from consumer.metrics import Metrics

# The exactly-once strategy lives in its own module; both are importable from here.
__all__ = ["AtLeastOnceDelivery", "Delivery", "DeliveryFailedError", "ExactlyOnceDelivery"]

log = structlog.get_logger(__name__)


class Delivery(Protocol):
    tracker: OffsetTracker[TopicPartition]

    async def deliver(self, outcome: Outcome) -> None: ...

    async def commit(self) -> None: ...

    def pending(self) -> int:
        """Outcomes finished but not yet durable: they still count against the in-flight bound."""
        ...

    async def close(self) -> None: ...

    def forget(self, partitions: Iterable[TopicPartition]) -> None: ...


class AtLeastOnceDelivery:
    """Produce now, finish on ack, commit the finished prefix; resend until acknowledged."""

    def __init__(
        self,
        producer: Producer,
        consumer: GroupConsumer,
        metrics: Metrics,
        guard: OutcomeGuard,
        topic_missing: TopicMissing,
    ) -> None:
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._producer = producer
        self._consumer = consumer
        self._metrics = metrics
        self._guard = guard
        self._topic_missing = topic_missing
        self._acks: set[asyncio.Task[None]] = set()
        # One commit at a time: a stale offset list committed last would move the offset back.
        self._lock = asyncio.Lock()
        self._failed: DeliveryFailedError | None = None

    async def deliver(self, outcome: Outcome) -> None:
        task = asyncio.create_task(self._deliver(outcome))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    @property
    def sending(self) -> int:
        """Outcomes produced (or being resent) whose acknowledgement has not come yet."""
        return len(self._acks)

    async def _deliver(self, outcome: Outcome) -> None:
        ref = outcome.ref
        candidate: Outcome | None = self._guard.fit(traced(outcome))
        while candidate is not None:
            try:
                acked = await self._send_until_acked(candidate)
            except Refused as refused:
                if refused.verdict is Verdict.PRODUCER:
                    log_refusal(candidate, refused.reason)
                    abandoned(candidate, refused.reason)
                    self._fail(f"{source_of(ref)}: {refused.reason}")
                    return
                reason = refused.reason
                candidate = self._guard.replacement(candidate, refused.verdict, reason)
                if candidate is None:
                    # Not even a reference can go to the DLQ topic: the configuration is
                    # broken. The record stays uncommitted and the member stops, rather than
                    # lose it.
                    self._fail(f"{source_of(ref)}: no form of its outcome can be written: {reason}")
                continue
            if acked:
                self.tracker.finished(ref.tp, ref.offset)
                self._metrics.count_outcome(candidate.kind, candidate.code)
                durable(candidate)
            else:
                abandoned(candidate, "partition revoked")
            return

    async def _send_until_acked(self, outcome: Outcome) -> bool:
        """True once `outcome` is acknowledged, False if its partition was revoked meanwhile.
        Raises `Refused` when Kafka refuses it for good."""
        ref = outcome.ref
        # Transient errors are resent without end while the record is ours: its offset is not
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
                    return False
                try:
                    ack = await self._producer.send(
                        outcome.topic, outcome.value, key=outcome.key, headers=outcome.headers
                    )
                    await ack
                except KafkaError as exc:
                    verdict = await verdict_on(exc, outcome.topic, self._topic_missing)
                    if verdict is not Verdict.RETRY:
                        raise Refused([outcome], verdict, describe(exc)) from exc
                    log.warning(
                        "produce_retry",
                        topic=outcome.topic,
                        partition=ref.tp.partition,
                        offset=ref.offset,
                        attempt=attempt.num,
                        error=type(exc).__name__,
                    )
                    raise
        return True

    def _fail(self, reason: str) -> None:
        if self._failed is None:
            self._failed = DeliveryFailedError(reason)

    async def commit(self) -> None:
        """Commit the finished prefix; then raise `DeliveryFailedError` if the producer can
        write nothing more (what is finished is still committed: less to redo)."""
        await self._commit_finished()
        if self._failed is not None:
            raise self._failed

    async def _commit_finished(self) -> None:
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
