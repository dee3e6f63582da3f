"""Which produce errors are worth a resend, and which never heal.

aiokafka marks some errors `retriable`, but not in the sense a delivery loop needs:
`KafkaTimeoutError` (the send buffer stayed full during an outage) is not marked retriable
though it heals by itself, and `UnknownTopicOrPartitionError` is marked retriable though a topic
that does not exist (with auto-creation off) never appears by waiting. So the verdicts are
listed here, by type; anything not listed is resent, which loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from enum import Enum

import structlog
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidProducerEpoch,
    InvalidTimestampError,
    InvalidTopicError,
    InvalidTxnState,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    PolicyViolationError,
    ProducerClosed,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownError,
    UnknownProducerId,
    UnknownTopicOrPartitionError,
    UnsupportedForMessageFormatError,
)

from consumer.kafka.clients import TopicAdmin
from consumer.kafka.outcomes import Outcome

log = structlog.get_logger(__name__)

_ASK_TIMEOUT_S = 15.0


class Verdict(Enum):
    """What a failed produce means for the outcome and for the producer."""

    RETRY = "retry"  # transient (outage, leader moving, buffer full): resend the same record
    RECORD = "record"  # this record as it is can never be written (too large, invalid)
    DESTINATION = "destination"  # the topic takes no record from us (authorization, no topic)
    PRODUCER = "producer"  # this producer can write nothing more: the member must restart


# The record itself is refused, wherever it goes. UnknownError is what aiokafka makes of codes
# it does not know, INVALID_RECORD (87) among them (e.g. a record without a key sent to a
# compacted topic); the Java client does not retry an unknown server error either.
_RECORD_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    UnknownError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)
# The destination refuses any record of ours; a smaller record to it would not help.
_DESTINATION_ERRORS: tuple[type[BaseException], ...] = (
    TopicAuthorizationFailedError,
    InvalidTopicError,
    PolicyViolationError,
)
# The producer is unusable: fenced by a newer one with our transactional id, its transaction
# timed out, or (aiokafka does not reset sequence numbers) a partition's sequence is broken
# after the broker refused a batch.
PRODUCER_ERRORS: tuple[type[BaseException], ...] = (
    ProducerFenced,
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidTxnState,
    TransactionalIdAuthorizationFailed,
    ClusterAuthorizationFailedError,
    ProducerClosed,
)


def classify(exc: BaseException, *, topic_missing: bool = False) -> Verdict:
    """The verdict on a produce error. `topic_missing`: the broker answered a metadata request
    without the destination topic, which makes `UnknownTopicOrPartitionError` permanent."""
    if isinstance(exc, PRODUCER_ERRORS):
        return Verdict.PRODUCER
    if isinstance(exc, _RECORD_ERRORS):
        return Verdict.RECORD
    if isinstance(exc, _DESTINATION_ERRORS):
        return Verdict.DESTINATION
    if isinstance(exc, UnknownTopicOrPartitionError) and topic_missing:
        return Verdict.DESTINATION
    return Verdict.RETRY


def describe(exc: BaseException) -> str:
    """A one-line reason: the error type and aiokafka's message, if it says more."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    # aiokafka's errors name themselves ("[Error 10] MessageSizeTooLargeError: <message>",
    # "DeliveryFailedError: <message>"): name them once.
    text = re.sub(rf"^(\[Error -?\d+\] )?{re.escape(name)}(: |:$|$)", "", text)
    return f"{name}: {text}"[:500] if text and text != name else name


class DeliveryFailedError(KafkaError):  # type: ignore[misc]
    """The producer can deliver nothing more (e.g. it was fenced); the member must restart."""


class Refused(Exception):
    """Kafka refused `outcomes` for good (or, with `Verdict.PRODUCER`, the producer is done)."""

    def __init__(self, outcomes: list[Outcome], verdict: Verdict, reason: str) -> None:
        super().__init__(reason)
        self.outcomes = outcomes
        self.verdict = verdict
        self.reason = reason


# Whether the broker, asked now, lists no such topic (False when it cannot be asked).
TopicMissing = Callable[[str], Awaitable[bool]]


def missing_topics_via(admin: Callable[[], TopicAdmin]) -> TopicMissing:
    """A `TopicMissing` asking the cluster's metadata with a short-lived admin client (asked
    rarely: only after aiokafka waited `request_timeout_ms` for a topic's metadata)."""

    async def missing(topic: str) -> bool:
        client = admin()
        try:
            async with asyncio.timeout(_ASK_TIMEOUT_S):
                await client.start()
                return topic not in await client.list_topics()
        except (KafkaError, OSError, TimeoutError):
            return False  # the broker did not answer: nothing is known to be missing
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    return missing


async def verdict_on(exc: BaseException, topic: str, topic_missing: TopicMissing) -> Verdict:
    """`classify`, asking the broker whether `topic` exists when Kafka says it does not."""
    missing = isinstance(exc, UnknownTopicOrPartitionError) and await topic_missing(topic)
    return classify(exc, topic_missing=missing)


def log_refusal(outcome: Outcome, reason: str) -> None:
    """Log, once, that Kafka refused `outcome` in a way that stops the member."""
    log.error(
        "outcome_refused",
        **outcome.log_fields(),
        reason=reason,
    )
