"""Which produce errors are resent and which never heal (consumer/kafka/produce_errors.py)."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
    PolicyViolationError,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownTopicOrPartitionError,
    for_code,
)

from consumer.kafka.produce_errors import (
    Verdict,
    classify,
    describe,
    missing_topics_via,
    verdict_on,
)


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        # An outage, a leader moving, a full send buffer: they heal by themselves.
        (KafkaConnectionError(), Verdict.RETRY),
        (KafkaTimeoutError(), Verdict.RETRY),  # aiokafka does not mark it retriable
        (RequestTimedOutError(), Verdict.RETRY),
        (NotLeaderForPartitionError(), Verdict.RETRY),
        (LeaderNotAvailableError(), Verdict.RETRY),
        (NotEnoughReplicasError(), Verdict.RETRY),
        (KafkaError("something new"), Verdict.RETRY),  # unknown: resending loses nothing
        # The record as it is can never be written.
        (MessageSizeTooLargeError("The message is 1048700 bytes"), Verdict.RECORD),
        (RecordTooLargeError(), Verdict.RECORD),
        (RecordListTooLargeError(), Verdict.RECORD),
        (CorruptRecordException(), Verdict.RECORD),
        (InvalidTimestampError(), Verdict.RECORD),
        (for_code(87)(), Verdict.RECORD),  # INVALID_RECORD, unknown to aiokafka
        # The topic takes nothing from us.
        (TopicAuthorizationFailedError("bird-predictions"), Verdict.DESTINATION),
        (InvalidTopicError(), Verdict.DESTINATION),
        (PolicyViolationError(), Verdict.DESTINATION),
        # The producer can write nothing more.
        (ProducerFenced(), Verdict.PRODUCER),
        (OutOfOrderSequenceNumber(), Verdict.PRODUCER),
        (TransactionalIdAuthorizationFailed(), Verdict.PRODUCER),
        (ClusterAuthorizationFailedError(), Verdict.PRODUCER),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.value,
)
def test_each_error_has_its_verdict(error: KafkaError, verdict: Verdict) -> None:
    assert classify(error) is verdict


def test_an_unknown_topic_is_permanent_only_once_the_broker_says_it_is_missing() -> None:
    # While the broker is away aiokafka raises the same error after request_timeout_ms.
    assert classify(UnknownTopicOrPartitionError()) is Verdict.RETRY
    assert classify(UnknownTopicOrPartitionError(), topic_missing=True) is Verdict.DESTINATION
    assert classify(KafkaTimeoutError(), topic_missing=True) is Verdict.RETRY


class Admin:
    """Stands in for a short-lived AIOKafkaAdminClient listing the cluster's topics."""

    made = 0
    closed = 0

    def __init__(self, topics: list[str] | None) -> None:
        self._topics = topics
        Admin.made += 1

    async def start(self) -> None:
        if self._topics is None:
            raise KafkaConnectionError("Unable to bootstrap")

    async def list_topics(self) -> list[str]:
        assert self._topics is not None
        return self._topics

    async def close(self) -> None:
        Admin.closed += 1


async def test_the_broker_is_asked_whether_an_unknown_topic_exists() -> None:
    missing = missing_topics_via(lambda: Admin(["bird-predictions"]))  # type: ignore[arg-type, return-value]
    assert await missing("bird-images.dlq") is True
    assert await missing("bird-predictions") is False
    # A broker that does not answer proves nothing: the error stays a transient one.
    down = missing_topics_via(lambda: Admin(None))  # type: ignore[arg-type, return-value]
    assert await down("bird-images.dlq") is False
    assert Admin.closed == Admin.made  # each client closed, answered or not

    unknown = UnknownTopicOrPartitionError()
    assert await verdict_on(unknown, "bird-images.dlq", missing) is Verdict.DESTINATION
    assert await verdict_on(unknown, "bird-images.dlq", down) is Verdict.RETRY
    # Other errors do not cost a metadata request.
    made = Admin.made
    assert await verdict_on(KafkaConnectionError(), "x", missing) is Verdict.RETRY
    assert Admin.made == made


def test_a_reason_is_one_line_with_the_type() -> None:
    assert describe(ProducerFenced()).startswith("ProducerFenced: ")
    assert describe(KafkaError()) == "KafkaError"
    reason = describe(MessageSizeTooLargeError("The message is\n1048700 bytes"))
    assert reason.startswith("MessageSizeTooLargeError: ")
    assert "\n" not in reason
    assert "1048700 bytes" in reason
    assert len(describe(KafkaError("x" * 5000))) == 500
    # Broker errors name themselves in their message: once is enough.
    assert describe(TopicAuthorizationFailedError("bird-predictions")) == (
        "TopicAuthorizationFailedError: bird-predictions"
    )
    assert describe(OutOfOrderSequenceNumber()) == "OutOfOrderSequenceNumber"
