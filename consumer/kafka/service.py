"""The Kafka adapter: consume image events, hand them to the pipeline, deliver and commit.

The loop reads as a short story: poll within the in-flight budget, parse, submit (`intake.py`);
a committer commits what is safely done (`committer.py`); backpressure pauses and resumes
intake; rebalances hand partitions over with their work committed (`rebalance.py`); on stop,
intake ends, in-flight work drains within the shutdown timeout, the last commit is made, and
the consumer leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable

import stamina
import structlog
from aiokafka import TopicPartition

from consumer.config import ProcessingGuarantee, Settings
from consumer.kafka.clients import (
    PRODUCER_MAX_REQUEST_BYTES,
    KafkaClients,
    client_options,
    describe_connection,
    member_options,
    result_producer_options,
)
from consumer.kafka.committer import Committer
from consumer.kafka.delivery import AtLeastOnceDelivery, Delivery, ExactlyOnceDelivery
from consumer.kafka.intake import Intake
from consumer.kafka.membership import leave_group
from consumer.kafka.outcome_guard import OutcomeGuard, RecordLimits
from consumer.kafka.outcomes import RecordRef, result_outcome
from consumer.kafka.produce_errors import missing_topics_via
from consumer.kafka.rebalance import RebalanceHandler
from consumer.kafka.state import ServiceState
from consumer.kafka.throughput import report_throughput
from consumer.kafka.topic_limits import read_topic_limits
from consumer.metrics import Metrics
from consumer.model import LoadedModel
from consumer.pipeline import Pipeline, WorkItem
from consumer.runtime import Runtime
from schemas import PredictionResult

__all__ = ["LEAVE_TIMEOUT_S", "OFFSETS_VISIBLE_TIMEOUT_S", "KafkaService", "ServiceState"]

log = structlog.get_logger(__name__)

# Bounds of the two handover steps of a graceful stop; both take milliseconds when the broker
# answers. Drain + these stay within the pod's terminationGracePeriodSeconds (docs/OPERATIONS.md).
LEAVE_TIMEOUT_S = 5.0
OFFSETS_VISIBLE_TIMEOUT_S = 5.0


class KafkaService:
    """One consumer-group member: input topic -> pipeline -> results topic (or DLQ)."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        model: LoadedModel,
        metrics: Metrics,
        state: ServiceState,
        clients: KafkaClients | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = state
        self._model = model
        self._clients = clients = clients or KafkaClients()
        self.consumer = clients.consumer(**member_options(settings))
        self._group = clients.group_session(self.consumer)
        self.producer = clients.producer(**result_producer_options(settings))
        limits = RecordLimits(PRODUCER_MAX_REQUEST_BYTES)
        self.guard = OutcomeGuard(limits, settings.dlq_topic, model.name, metrics)
        missing = missing_topics_via(functools.partial(clients.admin, **client_options(settings)))
        guarantee = settings.processing_guarantee
        self.delivery: Delivery = (
            ExactlyOnceDelivery(self.producer, settings.group_id, metrics, self.guard, missing)
            if guarantee is ProcessingGuarantee.EXACTLY_ONCE
            else AtLeastOnceDelivery(self.producer, self.consumer, metrics, self.guard, missing)
        )
        loaded: asyncio.Future[LoadedModel] = asyncio.get_running_loop().create_future()
        loaded.set_result(model)
        self.pipeline: Pipeline = runtime.pipeline(loaded, self._on_result, observer=metrics)
        self.intake = Intake(
            self.consumer, self.delivery, self.pipeline, metrics, settings, model.name
        )
        self.committer = Committer(
            self.delivery,
            self.consumer,
            state,
            guarantee,
            settings.commit_interval_ms / 1000,
            OFFSETS_VISIBLE_TIMEOUT_S,
        )
        self.rebalance = RebalanceHandler(
            self.committer, self.delivery, self.intake, state, metrics, settings.revoke_timeout_s
        )

    @property
    def owned(self) -> frozenset[TopicPartition]:
        """The partitions assigned to this member now."""
        return self.rebalance.owned

    @property
    def in_flight(self) -> int:
        """Records received whose outcome is not yet durable (what backpressure bounds)."""
        return self.intake.in_flight()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the producer and join the group, retrying while the broker is away."""
        log.info(
            "kafka_connecting",
            **describe_connection(self.settings),
            guarantee=self.settings.processing_guarantee.value,
            instance_id=self.settings.instance_id,
        )
        await _retry_start(self.producer.start, "producer")
        destinations = (self.settings.results_topic, self.settings.dlq_topic)
        self.guard.limits.topics = await read_topic_limits(
            self._clients, self.settings, destinations
        )
        self.consumer.subscribe([self.settings.input_topic], listener=self.rebalance)
        await _retry_start(self.consumer.start, "consumer")
        self.pipeline.start()
        self.state.running = True

    async def close(self) -> None:
        """Release the clients when `run` never ran (a stop while starting): a member that got
        as far as joining leaves, so its partitions do not wait for the session timeout."""
        self.state.running = False
        await leave_group(self._group, "birdwatch stopped while starting", LEAVE_TIMEOUT_S)
        await self.pipeline.close()
        await self.producer.stop()
        await self.consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then shut down gracefully. Raises `DeliveryFailedError`,
        after the shutdown, when the producer could deliver nothing more."""
        reporter = report_throughput(
            stop,
            self.consumer,
            self.delivery,
            self.metrics,
            owned=lambda: self.owned,
            paused=lambda: self.intake.paused,
            summary_interval_s=self.settings.summary_interval_s,
        )
        tasks = [
            asyncio.create_task(self.committer.loop(stop), name="committer"),
            asyncio.create_task(reporter, name="reporter"),
        ]
        try:
            while not stop.is_set() and self.committer.failure is None:
                room = self.intake.apply_backpressure()
                batch = await self.consumer.getmany(timeout_ms=100, max_records=max(1, room))
                for tp, records in batch.items():
                    for record in records:
                        await self.intake.accept(tp, record)
        finally:
            await self._shutdown(tasks)
        if self.committer.failure is not None:
            raise self.committer.failure

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        """Drain, commit, make the offsets visible, leave the group, then close: the partitions
        move to the other members as soon as the work is committed, not at a session timeout."""
        started = time.monotonic()
        self.state.running = False  # not ready any more: this member is going away
        log.info("shutdown_started", in_flight=self.delivery.tracker.unfinished())
        with contextlib.suppress(Exception):
            self.consumer.pause(*self.consumer.assignment())
        # A failed member does not wait for records that can no longer finish.
        failed = self.committer.failure is not None
        drain_s = 0.0 if failed else self.settings.shutdown_timeout_s
        await self.committer.wait_finished(None, drain_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.committer.commit()
        await self.committer.wait_offsets_visible(set(self.owned))
        left = self.delivery.tracker.unfinished()
        await leave_group(self._group, "birdwatch shutdown", LEAVE_TIMEOUT_S)
        self.state.joined = False
        await self.pipeline.close()
        await self.delivery.close()
        await self.producer.stop()
        await self.consumer.stop()
        log.info("shutdown_done", unfinished=left, seconds=round(time.monotonic() - started, 3))

    async def _on_result(self, item: WorkItem, result: PredictionResult) -> None:
        ref: RecordRef = item.tag
        if ref.timestamp_ms is not None and ref.timestamp_ms > 0:
            self.metrics.stage("end_to_end", max(0.0, time.time() - ref.timestamp_ms / 1000))
        await self.delivery.deliver(result_outcome(ref, self.settings.results_topic, result))


async def _retry_start(start: Callable[[], Awaitable[None]], what: str) -> None:
    """Start a client, retrying without end while the broker is away."""
    async for attempt in stamina.retry_context(
        on=Exception, attempts=None, timeout=None, wait_initial=0.5, wait_max=30.0, wait_jitter=0.5
    ):
        with attempt:
            try:
                await start()
            except Exception as exc:  # aiokafka raises several types while the broker is away
                log.warning(
                    "kafka_unavailable",
                    client=what,
                    attempt=attempt.num,
                    error=type(exc).__name__,
                    detail=str(exc),
                )
                raise
