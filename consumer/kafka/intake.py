"""Records in: each is parsed and handed to the pipeline (an unparseable one goes straight to
delivery, as an invalid-event result and a DLQ copy), and the assigned partitions are paused
while the work in flight reaches its bound, so memory never grows with a backlog."""

from __future__ import annotations

from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from consumer import tracing
from consumer.config import Settings
from consumer.kafka.clients import GroupConsumer
from consumer.kafka.delivery import Delivery
from consumer.kafka.outcomes import RecordRef, invalid_outcome
from consumer.metrics import Metrics
from consumer.pipeline import Pipeline
from schemas import InvalidEventError, parse_event

log = structlog.get_logger(__name__)


class Intake:
    """Accepts records into `pipeline` within `settings.max_in_flight`: intake pauses at the
    bound and resumes once half of it is free again."""

    def __init__(
        self,
        consumer: GroupConsumer,
        delivery: Delivery,
        pipeline: Pipeline,
        metrics: Metrics,
        settings: Settings,
        model_name: str,
    ) -> None:
        self._consumer = consumer
        self._delivery = delivery
        self._pipeline = pipeline
        self._metrics = metrics
        self._settings = settings
        self._model_name = model_name
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def in_flight(self) -> int:
        """Records received whose outcome is not yet durable."""
        # Exactly-once outcomes wait for their transaction: they count until it commits.
        return self._delivery.tracker.unfinished() + self._delivery.pending()

    def apply_backpressure(self) -> int:
        """Pause or resume intake for the work in flight now; returns the room left."""
        limit = self._settings.max_in_flight
        room = limit - self.in_flight()
        self._metrics.in_flight.set(limit - room)
        if not self._paused and room <= 0:
            self._consumer.pause(*self._consumer.assignment())
            self._paused = True
            self._metrics.paused.set(1)
            log.info("intake_paused", in_flight=limit - room)
        elif self._paused and room >= limit // 2:
            self._consumer.resume(*self._consumer.assignment())
            self._paused = False
            self._metrics.paused.set(0)
            log.info("intake_resumed", in_flight=limit - room)
        return room

    def hold_if_paused(self, assigned: set[TopicPartition]) -> None:
        """Newly assigned partitions join a paused intake paused."""
        if self._paused:
            self._consumer.pause(*assigned)

    async def accept(self, tp: TopicPartition, record: ConsumerRecord[Any, Any]) -> None:
        span = tracing.start_process(record.headers, tp.topic, tp.partition, record.offset)
        ref = RecordRef(tp, record.offset, record.timestamp, span)
        self._delivery.tracker.received(tp, record.offset)
        self._metrics.records_consumed.inc()
        try:
            event = parse_event(record.value or b"")
        except InvalidEventError as exc:
            if exc.event_id is not None:
                tracing.describe_event(span, exc.event_id, exc.url or "")
            s = self._settings
            outcome = invalid_outcome(
                ref, record, exc, s.results_topic, s.dlq_topic, self._model_name
            )
            await self._delivery.deliver(outcome)
            return
        tracing.describe_event(span, event.id, event.url)
        self._pipeline.submit(event, tag=ref, span=span)
