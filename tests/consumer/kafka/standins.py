"""A stand-in producer and consumer for the delivery strategies that behave as aiokafka does
(measured against Kafka 4.4), with the outcomes and checks the refusal tests share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import stamina
from aiokafka import TopicPartition
from aiokafka.errors import (
    MessageSizeTooLargeError,
    UnknownTopicOrPartitionError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import OffsetAndMetadata

from consumer.kafka.delivery import AtLeastOnceDelivery, ExactlyOnceDelivery
from consumer.kafka.outcome_guard import OutcomeGuard, RecordLimits
from consumer.kafka.outcomes import Outcome, RecordRef
from consumer.metrics import Metrics
from schemas import PredictionResult

MIB = 1_048_576

P0, P1 = TopicPartition("images", 0), TopicPartition("images", 1)

# What the broker or the client does with one record: None takes it; an error raised at send
# (the client's own checks) or failing its ack (the broker's answer).
Answer = tuple[str, BaseException] | None


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class StandInProducer:
    """Like AIOKafkaProducer: refuses records over max_request_size at send; `answer` decides the
    rest. Like aiokafka too, a transaction commits whatever its records' acks said."""

    answer: Callable[[Sent], Answer] = lambda _: None
    max_request_size: int = MIB
    missing_metadata: set[str] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    committed: list[list[Sent]] = field(default_factory=list)
    aborted: int = 0
    offsets: list[dict[TopicPartition, int]] = field(default_factory=list)
    _open: list[Sent] | None = None

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        record = Sent(topic, key, value or b"", list(headers or []))
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers or []))
        if size > self.max_request_size:
            raise MessageSizeTooLargeError(f"The message is {size} bytes when serialized")
        answer = self.answer(record)
        if answer is not None and answer[0] == "send":
            raise answer[1]
        self.sent.append(record)
        if self._open is not None:
            self._open.append(record)
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if answer is None:
            ack.set_result(len(self.sent))
        else:
            ack.set_exception(answer[1])
        return ack

    async def partitions_for(self, topic: str) -> set[int]:
        if topic in self.missing_metadata:
            raise UnknownTopicOrPartitionError()
        return {0, 1}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self._open = []
        try:
            yield
        except BaseException:
            self.aborted += 1
            raise
        finally:
            records, self._open = self._open, None
        self.committed.append(records)

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], group_id: str
    ) -> None:
        self.offsets.append({tp: meta.offset for tp, meta in offsets.items()})


class StandInConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.cluster_topics = {"images", "results", "dlq"}

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})

    async def topics(self) -> set[str]:
        return self.cluster_topics


def result_of(tp: TopicPartition, offset: int, topic: str = "results") -> Outcome:
    ok = PredictionResult.ok(f"id-{tp.partition}-{offset}", "https://b.example/x.jpg", [], "m", {})
    return Outcome(RecordRef(tp, offset), topic, ok.id.encode(), ok.to_json(), "ok")


def huge_copy(tp: TopicPartition, offset: int) -> Outcome:
    """The DLQ copy of a ~1 MB input record without a usable id: over the limit with headers."""
    headers = [("birdwatch-error", b"not JSON"), ("birdwatch-source", b"images/0/1")]
    return Outcome(RecordRef(tp, offset), "dlq", None, b"x" * (MIB - 40), "dlq", headers)


def fallbacks(metrics: Metrics, form: str) -> float:
    value = metrics.registry.get_sample_value("birdwatch_outcome_fallbacks_total", {"form": form})
    return value or 0.0


@dataclass
class Member:
    producer: StandInProducer
    consumer: StandInConsumer
    metrics: Metrics
    delivery: AtLeastOnceDelivery | ExactlyOnceDelivery


def member(eos: bool, producer: StandInProducer | None = None) -> Member:
    producer = producer or StandInProducer()
    consumer, metrics = StandInConsumer(), Metrics()
    guard = OutcomeGuard(RecordLimits(MIB), "dlq", "m", metrics)

    async def missing(topic: str) -> bool:
        return topic not in await consumer.topics()

    delivery: AtLeastOnceDelivery | ExactlyOnceDelivery
    if eos:
        delivery = ExactlyOnceDelivery(producer, "group", metrics, guard, missing)
    else:
        delivery = AtLeastOnceDelivery(producer, consumer, metrics, guard, missing)  # type: ignore[arg-type]
    return Member(producer, consumer, metrics, delivery)


async def deliver_all(m: Member, outcomes: list[Outcome]) -> None:
    for o in outcomes:
        m.delivery.tracker.received(o.ref.tp, o.ref.offset)
    for o in outcomes:
        await m.delivery.deliver(o)
    for _ in range(50):  # at-least-once sends in tasks: let them run
        await asyncio.sleep(0)


def committed(m: Member) -> dict[TopicPartition, int]:
    done: dict[TopicPartition, int] = {}
    for offsets in m.consumer.commits + m.producer.offsets:
        done.update(offsets)
    return done


@pytest.fixture(autouse=True)
def no_backoff_waits() -> Iterator[None]:
    """Produce retries without their waits, 20 attempts each: imported by the refusal tests,
    which count the resends the stand-in producer answers."""
    with stamina.set_testing(True, attempts=20):
        yield
