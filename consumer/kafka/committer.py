"""Making outcomes durable: the commit every interval, the bounded wait for the work of
partitions about to be handed over, and the first delivery failure, which fails the member."""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka import TopicPartition

from consumer.config import ProcessingGuarantee
from consumer.kafka.clients import GroupConsumer
from consumer.kafka.delivery import Delivery, DeliveryFailedError
from consumer.kafka.handover import wait_offsets_visible
from consumer.kafka.state import ServiceState

log = structlog.get_logger(__name__)


class Committer:
    """Commits through `delivery`; `failure` holds the first `DeliveryFailedError` (the
    producer can deliver nothing more, `state.failed`), after which the member stops."""

    def __init__(
        self,
        delivery: Delivery,
        consumer: GroupConsumer,
        state: ServiceState,
        guarantee: ProcessingGuarantee,
        interval_s: float,
        offsets_visible_timeout_s: float,
    ) -> None:
        self._delivery = delivery
        self._consumer = consumer
        self._state = state
        self._guarantee = guarantee
        self._interval_s = interval_s
        self._offsets_visible_timeout_s = offsets_visible_timeout_s
        self._failure: DeliveryFailedError | None = None

    @property
    def failure(self) -> DeliveryFailedError | None:
        return self._failure

    async def loop(self, stop: asyncio.Event) -> None:
        """Commit every interval until `stop` is set or a commit fails."""
        while not stop.is_set() and self._failure is None:
            await asyncio.sleep(self._interval_s)
            await self.commit()

    async def commit(self) -> None:
        """Commit what is done; a producer that can deliver nothing more fails the member."""
        try:
            # Shielded: cancelled halfway (at shutdown), a transaction could be committed yet not
            # recorded as such, and the final commit would then publish its outcomes again.
            await asyncio.shield(self._delivery.commit())
        except DeliveryFailedError as exc:
            if self._failure is None:
                log.error("delivery_failed", detail=str(exc))
                self._failure = exc
                self._state.failed = True

    async def wait_finished(self, partitions: set[TopicPartition] | None, limit_s: float) -> None:
        """Wait up to `limit_s` for the records of `partitions` (all when None) to finish."""
        deadline = time.monotonic() + limit_s
        tracker = self._delivery.tracker
        # Polling every 20 ms keeps the tracker free of asyncio; it only runs while draining.
        while tracker.unfinished(partitions) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def wait_offsets_visible(self, partitions: set[TopicPartition]) -> None:
        """Exactly-once: before the partitions go to another member, wait until the offsets of
        our last transaction are what the group reports (see consumer.kafka.handover)."""
        if self._guarantee is not ProcessingGuarantee.EXACTLY_ONCE:
            return  # an OffsetCommit is visible once answered
        expected = self._delivery.tracker.committed_offsets(partitions)
        await wait_offsets_visible(
            self._consumer.committed, expected, self._offsets_visible_timeout_s
        )
