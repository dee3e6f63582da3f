"""Exactly-once: a refused record aborts its transaction instead of being lost, missing
destinations are found before it opens, and a transient ack failure retries it whole."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
)
from structlog.testing import capture_logs

from consumer.kafka.delivery import DeliveryFailedError
from tests.consumer.kafka.standins import (
    P0,
    P1,
    Answer,
    Sent,
    StandInProducer,
    committed,
    deliver_all,
    member,
    no_backoff_waits,  # noqa: F401 (an autouse fixture)
    result_of,
)


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
