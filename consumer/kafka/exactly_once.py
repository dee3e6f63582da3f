"""Exactly-once delivery: finished outcomes wait for the commit step, then go into one transaction
with the input offsets they cover (`send_offsets_to_transaction`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from consumer.kafka.clients import Producer
from consumer.kafka.offsets import OffsetTracker
from consumer.kafka.outcome_guard import OutcomeGuard
from consumer.kafka.outcomes import Outcome, source_of
from consumer.kafka.produce_errors import (
    PRODUCER_ERRORS,
    DeliveryFailedError,
    Refused,
    TopicMissing,
    Verdict,
    describe,
    log_refusal,
    verdict_on,
)
from consumer.kafka.traced import durable, traced
from consumer.metrics import Metrics

log = structlog.get_logger(__name__)


class ExactlyOnceDelivery:
    """One transaction per commit step holding the finished outcomes and their offsets."""

    def __init__(
        self,
        producer: Producer,
        group_id: str,
        metrics: Metrics,
        guard: OutcomeGuard,
        topic_missing: TopicMissing,
    ) -> None:
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._producer = producer
        self._group_id = group_id
        self._metrics = metrics
        self._guard = guard
        self._topic_missing = topic_missing
        self._ready: dict[TopicPartition, dict[int, Outcome]] = {}
        self._lock = asyncio.Lock()
        self._failed: DeliveryFailedError | None = None

    async def deliver(self, outcome: Outcome) -> None:
        ref = outcome.ref
        if not self.tracker.is_unfinished(ref.tp, ref.offset):
            return  # the partition was revoked meanwhile
        # Checked before it goes in: one outcome over its topic's limit would abort every
        # transaction it is part of, and with it the results of all partitions.
        self._ready.setdefault(ref.tp, {})[ref.offset] = self._guard.fit(traced(outcome))
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
                await self._check_destinations(batch)
                await self._transact(batch, offsets)
            except Refused as refused:
                self._replace(refused)
                return
            except PRODUCER_ERRORS as exc:
                # Fenced by a newer producer with our transactional id, or our transaction
                # outlived transaction_timeout_ms: this producer may not write again.
                self._failed = DeliveryFailedError(describe(exc))
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
                self._metrics.count_outcome(outcome.kind, outcome.code)
                durable(outcome)
            self.tracker.mark_committed(offsets)

    async def _check_destinations(self, batch: list[Outcome]) -> None:
        """Wait for each destination topic's metadata before the transaction opens: waiting
        inside it could outlast the transaction timeout. Raises `Refused` for a topic that is
        refused for good (missing, not authorized)."""
        for topic in sorted({o.topic for o in batch}):
            try:
                await self._producer.partitions_for(topic)
            except KafkaError as exc:
                verdict = await verdict_on(exc, topic, self._topic_missing)
                if verdict is Verdict.RETRY:
                    raise
                raise Refused(
                    [o for o in batch if o.topic == topic], verdict, describe(exc)
                ) from exc

    async def _transact(self, batch: list[Outcome], offsets: dict[TopicPartition, int]) -> None:
        acks: list[tuple[Outcome, asyncio.Future[Any]]] = []
        try:
            async with self._producer.transaction():
                for o in batch:
                    try:
                        ack = await self._producer.send(
                            o.topic, o.value, key=o.key, headers=o.headers
                        )
                    except KafkaError as exc:
                        verdict = await verdict_on(exc, o.topic, self._topic_missing)
                        if verdict in (Verdict.RECORD, Verdict.DESTINATION):
                            raise Refused([o], verdict, describe(exc)) from exc
                        raise
                    acks.append((o, ack))
                await self._producer.send_offsets_to_transaction(
                    {tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()}, self._group_id
                )
                # aiokafka commits a transaction even when the broker refused some of its
                # records (measured with Kafka 4.4: the others and the offsets became visible,
                # the refused outcome was lost). Every ack must be in before the commit, so that
                # a refusal aborts the transaction instead.
                await self._all_acknowledged(acks)
        finally:
            # The transaction's outcome is what counts; a failed one fails every record's
            # future too, which asyncio would otherwise report one by one when collected.
            for _, ack in acks:
                ack.add_done_callback(_seen)
        log.debug("transaction_committed", outcomes=len(batch), partitions=len(offsets))

    async def _all_acknowledged(self, acks: list[tuple[Outcome, asyncio.Future[Any]]]) -> None:
        answers = await asyncio.gather(*(ack for _, ack in acks), return_exceptions=True)
        failures = [
            (o, a) for (o, _), a in zip(acks, answers, strict=True) if isinstance(a, BaseException)
        ]
        for outcome, exc in failures:
            verdict = await verdict_on(exc, outcome.topic, self._topic_missing)
            if verdict in (Verdict.RECORD, Verdict.DESTINATION):
                # The broker refused a batch: aiokafka does not reset the partition's sequence
                # numbers, so this producer can write nothing more there (every later batch gets
                # OutOfOrderSequenceNumber). The member restarts, reading the topics' limits anew.
                raise Refused(
                    [outcome], Verdict.PRODUCER, f"refused by the broker: {describe(exc)}"
                )
        if failures:
            # A producer that can write nothing more outranks a transient failure.
            fatal = [exc for _, exc in failures if isinstance(exc, PRODUCER_ERRORS)]
            raise (fatal or [failures[0][1]])[0]

    def _replace(self, refused: Refused) -> None:
        """Put stand-ins for refused outcomes in their place; fail when none is left."""
        for outcome in refused.outcomes:
            stand_in = None
            if refused.verdict is not Verdict.PRODUCER:
                stand_in = self._guard.replacement(outcome, refused.verdict, refused.reason)
            if stand_in is None:
                source, reason = source_of(outcome.ref), refused.reason
                if refused.verdict is Verdict.PRODUCER:
                    log_refusal(outcome, reason)
                else:
                    reason = f"no form of its outcome can be written: {reason}"
                self._failed = DeliveryFailedError(f"{source}: {reason}")
                raise self._failed
            self._ready[outcome.ref.tp][outcome.ref.offset] = stand_in

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
