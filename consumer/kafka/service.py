"""The Kafka adapter: consume image events, hand them to the pipeline, deliver and commit.

The loop reads as a short story: poll within the in-flight budget, parse, submit; a committer
commits what is safely done; backpressure pauses and resumes intake; on stop, intake ends,
in-flight work drains within the shutdown timeout, the last commit is made, and the consumer
leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import stamina
import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from consumer.config import ProcessingGuarantee, Settings
from consumer.kafka.clients import (
    PRODUCER_MAX_REQUEST_BYTES,
    KafkaClients,
    client_options,
    describe_connection,
    member_options,
    result_producer_options,
)
from consumer.kafka.delivery import (
    AtLeastOnceDelivery,
    Delivery,
    DeliveryFailedError,
    ExactlyOnceDelivery,
)
from consumer.kafka.handover import wait_offsets_visible
from consumer.kafka.lag import forget_lag, measure_lag, measure_record_ages
from consumer.kafka.membership import leave_group
from consumer.kafka.outcome_guard import OutcomeGuard, RecordLimits
from consumer.kafka.outcomes import RecordRef, invalid_outcome, result_outcome
from consumer.kafka.produce_errors import missing_topics_via
from consumer.kafka.topic_limits import read_topic_limits
from consumer.metrics import Metrics
from consumer.model import LoadedModel
from consumer.pipeline import Pipeline, WorkItem
from consumer.runtime import Runtime
from schemas import InvalidEventError, PredictionResult, parse_event

log = structlog.get_logger(__name__)

# Bounds of the two handover steps of a graceful stop; both take milliseconds when the broker
# answers. Drain + these stay within the pod's terminationGracePeriodSeconds (docs/OPERATIONS.md).
LEAVE_TIMEOUT_S = 5.0
OFFSETS_VISIBLE_TIMEOUT_S = 5.0


@dataclass
class ServiceState:
    """What the health and readiness endpoints report. `joined`: the member has its
    assignment (false from a rebalance's revoke until the next assignment); `running`: from the
    start until a shutdown begins."""

    model_loaded: bool = False
    joined: bool = False
    running: bool = False
    failed: bool = False

    @property
    def ready(self) -> bool:
        return self.model_loaded and self.joined and self.running


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: KafkaService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._service.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._service.on_assigned(set(assigned))


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
        self._owned: set[TopicPartition] = set()
        self._paused = False
        self._failure: DeliveryFailedError | None = None
        self._clients = clients = clients or KafkaClients()
        self.consumer = clients.consumer(**member_options(settings))
        self._group = clients.group_session(self.consumer)
        self.producer = clients.producer(**result_producer_options(settings))
        limits = RecordLimits(PRODUCER_MAX_REQUEST_BYTES)
        self.guard = OutcomeGuard(limits, settings.dlq_topic, model.name, metrics)
        missing = missing_topics_via(functools.partial(clients.admin, **client_options(settings)))
        self.delivery: Delivery = (
            ExactlyOnceDelivery(self.producer, settings.group_id, metrics, self.guard, missing)
            if settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE
            else AtLeastOnceDelivery(self.producer, self.consumer, metrics, self.guard, missing)
        )
        loaded: asyncio.Future[LoadedModel] = asyncio.get_running_loop().create_future()
        loaded.set_result(model)
        self.pipeline: Pipeline = runtime.pipeline(loaded, self._on_result, observer=metrics)

    @property
    def owned(self) -> frozenset[TopicPartition]:
        """The partitions assigned to this member now."""
        return frozenset(self._owned)

    @property
    def in_flight(self) -> int:
        """Records received whose outcome is not yet durable (what backpressure bounds)."""
        return self._in_flight()

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
        self.consumer.subscribe([self.settings.input_topic], listener=_RebalanceListener(self))
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
        tasks = [
            asyncio.create_task(self._commit_loop(stop), name="committer"),
            asyncio.create_task(self._report_loop(stop), name="reporter"),
        ]
        try:
            while not stop.is_set() and self._failure is None:
                room = self.settings.max_in_flight - self._in_flight()
                self._apply_backpressure(room)
                batch = await self.consumer.getmany(timeout_ms=100, max_records=max(1, room))
                for tp, records in batch.items():
                    for record in records:
                        await self._accept(tp, record)
        finally:
            await self._shutdown(tasks)
        if self._failure is not None:
            raise self._failure

    def _in_flight(self) -> int:
        # Exactly-once outcomes wait for their transaction: they count until it commits.
        return self.delivery.tracker.unfinished() + self.delivery.pending()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        """Drain, commit, make the offsets visible, leave the group, then close: the partitions
        move to the other members as soon as the work is committed, not at a session timeout."""
        started = time.monotonic()
        self.state.running = False  # not ready any more: this member is going away
        log.info("shutdown_started", in_flight=self.delivery.tracker.unfinished())
        with contextlib.suppress(Exception):
            self.consumer.pause(*self.consumer.assignment())
        # A failed member does not wait for records that can no longer finish.
        drain_s = 0.0 if self._failure is not None else self.settings.shutdown_timeout_s
        await self._wait_finished(None, drain_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._commit()
        await self._wait_offsets_visible(self._owned)
        left = self.delivery.tracker.unfinished()
        await leave_group(self._group, "birdwatch shutdown", LEAVE_TIMEOUT_S)
        self.state.joined = False
        await self.pipeline.close()
        await self.delivery.close()
        await self.producer.stop()
        await self.consumer.stop()
        log.info("shutdown_done", unfinished=left, seconds=round(time.monotonic() - started, 3))

    # --- intake --------------------------------------------------------------------------

    async def _accept(self, tp: TopicPartition, record: ConsumerRecord[Any, Any]) -> None:
        ref = RecordRef(tp, record.offset, record.timestamp)
        self.delivery.tracker.received(tp, record.offset)
        self.metrics.records_consumed.inc()
        try:
            event = parse_event(record.value or b"")
        except InvalidEventError as exc:
            s = self.settings
            outcome = invalid_outcome(
                ref, record, exc, s.results_topic, s.dlq_topic, self._model.name
            )
            await self.delivery.deliver(outcome)
            return
        self.pipeline.submit(event, tag=ref)

    async def _on_result(self, item: WorkItem, result: PredictionResult) -> None:
        ref: RecordRef = item.tag
        if ref.timestamp_ms is not None and ref.timestamp_ms > 0:
            self.metrics.stage("end_to_end", max(0.0, time.time() - ref.timestamp_ms / 1000))
        await self.delivery.deliver(result_outcome(ref, self.settings.results_topic, result))

    def _apply_backpressure(self, room: int) -> None:
        limit = self.settings.max_in_flight
        self.metrics.in_flight.set(limit - room)
        if not self._paused and room <= 0:
            self.consumer.pause(*self.consumer.assignment())
            self._paused = True
            self.metrics.paused.set(1)
            log.info("intake_paused", in_flight=limit - room)
        elif self._paused and room >= limit // 2:
            self.consumer.resume(*self.consumer.assignment())
            self._paused = False
            self.metrics.paused.set(0)
            log.info("intake_resumed", in_flight=limit - room)

    # --- commits, rebalances, reporting ----------------------------------------------------

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        interval = self.settings.commit_interval_ms / 1000
        while not stop.is_set() and self._failure is None:
            await asyncio.sleep(interval)
            await self._commit()

    async def _commit(self) -> None:
        """Commit what is done; a producer that can deliver nothing more fails the member."""
        try:
            # Shielded: cancelled halfway (at shutdown), a transaction could be committed yet not
            # recorded as such, and the final commit would then publish its outcomes again.
            await asyncio.shield(self.delivery.commit())
        except DeliveryFailedError as exc:
            if self._failure is None:
                log.error("delivery_failed", detail=str(exc))
                self._failure = exc
                self.state.failed = True

    async def _wait_finished(self, partitions: set[TopicPartition] | None, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        # Polling every 20 ms keeps the tracker free of asyncio; it only runs while draining.
        while self.delivery.tracker.unfinished(partitions) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        log.info(
            "partitions_revoked",
            partitions=_names(revoked),
            in_flight=self.delivery.tracker.unfinished(revoked),
        )
        self.state.joined = False  # until the rebalance hands out the partitions again
        await self._wait_finished(revoked, self.settings.revoke_timeout_s)
        await self._commit()
        await self._wait_offsets_visible(revoked)
        # Whatever is still in flight for them is dropped: their next owner redoes it.
        self.delivery.forget(revoked)
        self._owned -= revoked
        forget_lag(self.metrics, revoked)

    async def _wait_offsets_visible(self, partitions: set[TopicPartition]) -> None:
        """Exactly-once: before the partitions go to another member, wait until the offsets of
        our last transaction are what the group reports (see consumer.kafka.handover)."""
        if self.settings.processing_guarantee is not ProcessingGuarantee.EXACTLY_ONCE:
            return  # an OffsetCommit is visible once answered
        expected = self.delivery.tracker.committed_offsets(partitions)
        await wait_offsets_visible(self.consumer.committed, expected, OFFSETS_VISIBLE_TIMEOUT_S)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owned |= assigned
        self.state.joined = True
        self.metrics.rebalances.inc()
        if self._paused:
            self.consumer.pause(*assigned)
        log.info("partitions_assigned", partitions=_names(assigned), owned=len(self._owned))

    async def _report_loop(self, stop: asyncio.Event) -> None:
        last_time, last_count = time.monotonic(), 0
        next_summary = last_time + self.settings.summary_interval_s
        while not stop.is_set():
            await asyncio.sleep(min(5.0, self.settings.summary_interval_s))
            lag = await measure_lag(self.consumer, self.delivery.tracker, self._owned, self.metrics)
            oldest_s = measure_record_ages(self.delivery.tracker, self._owned, self.metrics)
            now = time.monotonic()
            if now < next_summary:
                continue
            produced = self.metrics.outcomes_total
            log.info(
                "throughput",
                images_per_s=round((produced - last_count) / (now - last_time), 2),
                results=int(produced),
                in_flight=self.delivery.tracker.unfinished(),
                lag=lag,
                oldest_uncommitted_s=round(oldest_s, 1),
                partitions=len(self._owned),
                paused=self._paused,
            )
            last_time, last_count = now, produced
            next_summary = now + self.settings.summary_interval_s


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


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}-{tp.partition}" for tp in partitions)
