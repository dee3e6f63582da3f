"""What an input record turns into: a result keyed by its event id, or a dead-letter copy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from opentelemetry.trace import Span

from schemas import ErrorCode, InvalidEventError, PredictionResult

log = structlog.get_logger(__name__)

DLQ_REASON_HEADER = "birdwatch-error"
DLQ_CODE_HEADER = "birdwatch-error-code"
DLQ_SOURCE_HEADER = "birdwatch-source"
# Every DLQ record says what it holds ("copy", "truncated" or "reference", see
# consumer/kafka/outcome_guard.py) and how large the input record's value was.
DLQ_FORM_HEADER = "birdwatch-dlq-form"
DLQ_ORIGINAL_SIZE_HEADER = "birdwatch-original-size"
_JSON = ("content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Where an input record came from."""

    tp: TopicPartition
    offset: int
    timestamp_ms: int | None = None
    # The record's `process` span (consumer/tracing.py); a no-op span without an SDK.
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class Outcome:
    """The one output an input record produces: a result or a dead-letter copy."""

    ref: RecordRef
    topic: str
    key: bytes | None
    value: bytes
    kind: str  # "ok", "error" or "dlq", for metrics
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    # "original", or the smaller stand-in it was replaced by when Kafka could not take it:
    # "truncated" (a DLQ copy cut to fit), "internal" (an error result), "reference".
    form: str = "original"
    # The error code of an "error" result, for metrics; empty otherwise.
    code: str = ""
    # Its `produce` span, whose context the headers carry (consumer/kafka/traced.py).
    trace: Span | None = field(default=None, compare=False, repr=False)

    def log_fields(self) -> dict[str, object]:
        """Where this outcome comes from and goes, for the log lines about it."""
        return {
            "topic": self.ref.tp.topic,
            "partition": self.ref.tp.partition,
            "offset": self.ref.offset,
            "destination": self.topic,
        }


def result_outcome(ref: RecordRef, topic: str, result: PredictionResult) -> Outcome:
    """A result on the results topic, keyed by the event id."""
    code = result.error.code.value if result.error is not None else ""
    return Outcome(
        ref, topic, result.id.encode(), result.to_json(), result.status, [_JSON], code=code
    )


def invalid_outcome(
    ref: RecordRef,
    record: ConsumerRecord[Any, Any],
    exc: InvalidEventError,
    results_topic: str,
    dlq_topic: str,
    model_name: str,
) -> Outcome:
    """An `invalid_event` result when the record names an id, else a copy on the DLQ."""
    if exc.event_id is not None:
        result = PredictionResult.failed(
            exc.event_id, exc.url, ErrorCode.INVALID_EVENT, exc.reason, model_name
        )
        log.debug("invalid_event", id=exc.event_id, url=exc.url, reason=exc.reason)
        return result_outcome(ref, results_topic, result)
    log.debug("dead_letter", partition=ref.tp.partition, offset=ref.offset, reason=exc.reason)
    value = record.value or b""
    headers = [
        (DLQ_REASON_HEADER, exc.reason.encode()[:1000]),
        (DLQ_CODE_HEADER, ErrorCode.INVALID_EVENT.value.encode()),
        (DLQ_SOURCE_HEADER, source_of(ref).encode()),
        (DLQ_FORM_HEADER, b"copy"),
        (DLQ_ORIGINAL_SIZE_HEADER, str(len(value)).encode()),
    ]
    return Outcome(ref, dlq_topic, record.key, value, "dlq", headers)


def source_of(ref: RecordRef) -> str:
    """`topic/partition/offset` of the input record."""
    return f"{ref.tp.topic}/{ref.tp.partition}/{ref.offset}"
