"""Outcomes Kafka refuses never block delivery, in either mode: pure logic against a stand-in
producer that behaves as aiokafka does (measured against Kafka 4.4, see the module docstrings).
The same cases run through the real broker in test_oversized_records_kafka.py."""

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
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import OffsetAndMetadata
from structlog.testing import capture_logs

from consumer.kafka.delivery import AtLeastOnceDelivery, DeliveryFailedError, ExactlyOnceDelivery
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


@pytest.fixture(autouse=True)
def _no_backoff_waits() -> Iterator[None]:
    stamina.set_testing(True, attempts=20)
    yield
    stamina.set_testing(False)


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


# --- both modes --------------------------------------------------------------------------------


@pytest.mark.parametrize("eos", [False, True], ids=["at_least_once", "exactly_once"])
async def test_a_1_mb_dlq_copy_is_truncated_and_every_partition_commits(eos: bool) -> None:
    m = member(eos)
    outcomes = [result_of(P0, 0), huge_copy(P0, 1), result_of(P0, 2), result_of(P1, 0)]
    await deliver_all(m, outcomes)
    await m.delivery.commit()

    assert committed(m) == {P0: 3, P1: 1}
    dlq = [s for s in m.producer.sent if s.topic == "dlq"]
    assert len(dlq) == 1  # sent once, already cut: never resent as it was
    assert dict(dlq[0].headers)["birdwatch-dlq-form"] == b"truncated"
    assert len([s for s in m.producer.sent if s.topic == "results"]) == 3
    assert m.producer.aborted == 0
    assert fallbacks(m.metrics, "truncated") == 1
    assert m.metrics.outcomes_total == 4


@pytest.mark.parametrize("eos", [False, True], ids=["at_least_once", "exactly_once"])
async def test_a_result_the_results_topic_refuses_becomes_a_dlq_reference(eos: bool) -> None:
    refused = TopicAuthorizationFailedError("results")

    def answer(record: Sent) -> Answer:
        # aiokafka raises this from send(), out of the metadata it keeps.
        return ("send", refused) if record.topic == "results" and record.key == b"id-0-1" else None

    m = member(eos, StandInProducer(answer))
    with capture_logs() as logs:
        await deliver_all(m, [result_of(P0, 0), result_of(P0, 1), result_of(P1, 0)])
        await m.delivery.commit()
        await asyncio.sleep(0)
        await m.delivery.commit()  # exactly-once: the stand-in goes in the next transaction

    assert committed(m) == {P0: 2, P1: 1}
    [reference] = [s for s in m.producer.sent if s.topic == "dlq"]
    assert reference.key == b"id-0-1"
    assert dict(reference.headers)["birdwatch-dlq-form"] == b"reference"
    assert dict(reference.headers)["birdwatch-source"] == b"images/0/1"
    assert fallbacks(m.metrics, "reference") == 1
    [event] = [e for e in logs if e["event"] == "outcome_replaced"]
    assert (event["topic"], event["partition"], event["offset"]) == ("images", 0, 1)
    assert "TopicAuthorizationFailedError" in event["reason"]
    # Never resent as it was.
    assert [s.key for s in m.producer.sent].count(b"id-0-1") == 1


@pytest.mark.parametrize("eos", [False, True], ids=["at_least_once", "exactly_once"])
async def test_when_not_even_a_reference_can_be_written_the_member_fails(eos: bool) -> None:
    def answer(record: Sent) -> Answer:
        return ("send", TopicAuthorizationFailedError(record.topic)) if record.key == b"k" else None

    m = member(eos, StandInProducer(answer))
    refused = Outcome(RecordRef(P0, 1), "dlq", b"k", b"{", "dlq")
    await deliver_all(m, [result_of(P0, 0), refused, result_of(P1, 0)])
    with pytest.raises(DeliveryFailedError, match="images/0/1: no form of its outcome can be"):
        await m.delivery.commit()
    # Nothing is lost: the refused record stays uncommitted, for the next member to try.
    assert committed(m).get(P0, 0) <= 1


# --- at-least-once -----------------------------------------------------------------------------


async def test_transient_errors_are_resent_until_acknowledged() -> None:
    failures = [KafkaConnectionError(), KafkaConnectionError()]

    def answer(record: Sent) -> Answer:
        return ("ack", failures.pop()) if failures else None

    m = member(False, StandInProducer(answer))
    with capture_logs() as logs:
        await deliver_all(m, [result_of(P0, 0)])
        await m.delivery.commit()
    assert len(m.producer.sent) == 3
    assert committed(m) == {P0: 1}
    retries = [e for e in logs if e["event"] == "produce_retry"]
    assert [(e["partition"], e["offset"]) for e in retries] == [(0, 0), (0, 0)]


async def test_a_broken_producer_fails_the_member_after_committing_what_is_done() -> None:
    def answer(record: Sent) -> Answer:
        return ("ack", OutOfOrderSequenceNumber()) if record.key == b"id-1-0" else None

    m = member(False, StandInProducer(answer))
    with capture_logs() as logs:
        await deliver_all(m, [result_of(P0, 0), result_of(P1, 0)])
    with pytest.raises(DeliveryFailedError, match="images/1/0: OutOfOrderSequenceNumber"):
        await m.delivery.commit()
    [refused] = [e for e in logs if e["event"] == "outcome_refused"]
    assert (refused["partition"], refused["offset"], refused["destination"]) == (1, 0, "results")
    assert committed(m) == {P0: 1, P1: 0}  # not past the record whose result failed
    assert [s.key for s in m.producer.sent].count(b"id-1-0") == 1  # not resent


async def test_an_unknown_topic_is_resent_while_it_may_still_appear() -> None:
    appears_after = [UnknownTopicOrPartitionError()] * 2

    def answer(record: Sent) -> Answer:
        return ("send", appears_after.pop()) if appears_after else None

    m = member(False, StandInProducer(answer))
    await deliver_all(m, [result_of(P0, 0)])  # "results" is listed by the broker
    await m.delivery.commit()
    assert committed(m) == {P0: 1}
    assert fallbacks(m.metrics, "reference") == 0


async def test_a_missing_topic_is_given_up_at_once() -> None:
    def answer(record: Sent) -> Answer:
        return ("send", UnknownTopicOrPartitionError()) if record.topic == "results" else None

    m = member(False, StandInProducer(answer))
    m.consumer.cluster_topics.discard("results")
    await deliver_all(m, [result_of(P0, 0)])
    await m.delivery.commit()
    assert committed(m) == {P0: 1}
    assert [s.topic for s in m.producer.sent] == ["dlq"]


# --- exactly-once ------------------------------------------------------------------------------


async def test_a_record_the_broker_refuses_aborts_the_transaction_instead_of_losing_it() -> None:
    # aiokafka commits a transaction whose record the broker refused, with the input offsets:
    # that outcome would be lost. The member must abort, and (the producer's sequence numbers
    # being broken by the refusal) stop.
    def answer(record: Sent) -> Answer:
        return ("ack", MessageSizeTooLargeError()) if record.key == b"id-0-1" else None

    m = member(True, StandInProducer(answer))
    await deliver_all(m, [result_of(P0, 0), result_of(P0, 1), result_of(P1, 0)])
    with (
        capture_logs() as logs,
        pytest.raises(DeliveryFailedError, match="images/0/1: refused by the broker"),
    ):
        await m.delivery.commit()
    [refused] = [e for e in logs if e["event"] == "outcome_refused"]
    assert (refused["topic"], refused["partition"], refused["offset"]) == ("images", 0, 1)
    assert refused["reason"] == "refused by the broker: MessageSizeTooLargeError"
    assert m.producer.committed == []
    assert m.producer.aborted == 1
    assert m.metrics.outcomes_total == 0


async def test_a_missing_destination_is_found_before_the_transaction_opens() -> None:
    m = member(True, StandInProducer(missing_metadata={"results"}))
    m.consumer.cluster_topics.discard("results")
    await deliver_all(m, [result_of(P0, 0), result_of(P1, 0)])
    await m.delivery.commit()
    assert m.producer.committed == []  # no transaction opened for them
    await m.delivery.commit()
    [records] = m.producer.committed
    assert [r.topic for r in records] == ["dlq", "dlq"]
    assert committed(m) == {P0: 1, P1: 1}


async def test_metadata_that_may_still_come_defers_the_transaction() -> None:
    m = member(True, StandInProducer(missing_metadata={"results"}))
    await deliver_all(m, [result_of(P0, 0)])
    with capture_logs() as logs:
        await m.delivery.commit()
    assert [e["error"] for e in logs if e["event"] == "transaction_failed"] == [
        "UnknownTopicOrPartitionError"
    ]
    assert m.delivery.pending() == 1
    m.producer.missing_metadata.clear()
    await m.delivery.commit()
    assert committed(m) == {P0: 1}


async def test_a_transient_ack_failure_retries_the_whole_transaction() -> None:
    failures: list[KafkaError] = [KafkaConnectionError()]

    def answer(record: Sent) -> Answer:
        return ("ack", failures.pop()) if failures else None

    m = member(True, StandInProducer(answer))
    await deliver_all(m, [result_of(P0, 0), result_of(P1, 0)])
    await m.delivery.commit()
    assert (m.producer.aborted, m.producer.committed) == (1, [])
    await m.delivery.commit()
    assert len(m.producer.committed) == 1
    assert committed(m) == {P0: 1, P1: 1}
