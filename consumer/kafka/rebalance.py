"""Rebalances: partitions given up are handed over with their work committed; partitions
received are owned (and paused when intake is)."""

from __future__ import annotations

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition

from consumer.kafka.committer import Committer
from consumer.kafka.delivery import Delivery
from consumer.kafka.intake import Intake
from consumer.kafka.lag import forget_lag
from consumer.kafka.state import ServiceState
from consumer.metrics import Metrics

log = structlog.get_logger(__name__)


class RebalanceHandler(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's listener: on revoke, wait (up to `revoke_timeout_s`) for the revoked
    partitions' work, commit it, make the offsets visible, and drop what is left (the next
    owner redoes it); on assign, own the partitions. Not ready in between."""

    def __init__(
        self,
        committer: Committer,
        delivery: Delivery,
        intake: Intake,
        state: ServiceState,
        metrics: Metrics,
        revoke_timeout_s: float,
    ) -> None:
        self._committer = committer
        self._delivery = delivery
        self._intake = intake
        self._state = state
        self._metrics = metrics
        self._revoke_timeout_s = revoke_timeout_s
        self._owned: set[TopicPartition] = set()

    @property
    def owned(self) -> frozenset[TopicPartition]:
        """The partitions assigned to this member now."""
        return frozenset(self._owned)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        revoked = set(revoked)
        log.info(
            "partitions_revoked",
            partitions=partition_names(revoked),
            in_flight=self._delivery.tracker.unfinished(revoked),
        )
        self._state.joined = False  # until the rebalance hands out the partitions again
        await self._committer.wait_finished(revoked, self._revoke_timeout_s)
        await self._committer.commit()
        await self._committer.wait_offsets_visible(revoked)
        # Whatever is still in flight for them is dropped: their next owner redoes it.
        self._delivery.forget(revoked)
        self._owned -= revoked
        forget_lag(self._metrics, revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        assigned = set(assigned)
        self._owned |= assigned
        self._state.joined = True
        self._metrics.rebalances.inc()
        self._intake.hold_if_paused(assigned)
        log.info(
            "partitions_assigned", partitions=partition_names(assigned), owned=len(self._owned)
        )


def partition_names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}-{tp.partition}" for tp in partitions)
