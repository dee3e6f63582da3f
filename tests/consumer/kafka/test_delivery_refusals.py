"""Outcomes Kafka refuses never block delivery, in either mode: pure logic against a stand-in
producer that behaves as aiokafka does (measured against Kafka 4.4, see the module docstrings).
The same cases run through the real broker in test_oversized_records_kafka.py; the
exactly-once ones are in test_delivery_refusals_eos.py."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    OutOfOrderSequenceNumber,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from structlog.testing import capture_logs

from consumer.kafka.delivery import DeliveryFailedError
from consumer.kafka.outcomes import Outcome, RecordRef
from tests.consumer.kafka.standins import (
    P0,
    P1,
    Answer,
    Sent,
    StandInProducer,
    committed,
    deliver_all,
    fallbacks,
    huge_copy,
    member,
    no_backoff_waits,  # noqa: F401 (an autouse fixture)
    result_of,
)


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
