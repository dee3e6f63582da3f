"""Outcomes Kafka will take: fitted under their topic's record limit before they are sent, and
replaced by a smaller stand-in when Kafka refuses them for good.

Every input record must end as one durable outcome, so a refused outcome is never resent as it
is (that stalls its partition for good) and never dropped. It steps down this ladder instead,
each step logged once (`outcome_replaced`, with the input's topic, partition, offset and why):

- a result (`ok` or `error`) → an `internal` error result for the same id → a DLQ reference;
- a DLQ copy of an unusable record → the copy with its value cut to fit (a *truncated* copy:
  header `birdwatch-dlq-form: truncated`, `birdwatch-original-size` the value's size) → a DLQ
  reference;
- a DLQ *reference*: no value, only headers naming the input record (`birdwatch-source` =
  topic/partition/offset), why it is on the DLQ and why the fuller form was refused.

Truncation keeps as much of a DLQ copy as fits, since the input may be gone (retention) by the
time someone reads the DLQ; a reference is the last resort, when even a cut copy is refused.
A step whose topic is the one that refused (authorization, missing topic) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import orjson
import structlog
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from consumer.kafka.outcomes import (
    DLQ_CODE_HEADER,
    DLQ_FORM_HEADER,
    DLQ_ORIGINAL_SIZE_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SOURCE_HEADER,
    Outcome,
    source_of,
)
from consumer.kafka.produce_errors import Verdict
from consumer.metrics import Metrics
from consumer.tracing import PROPAGATED_HEADERS
from schemas import ErrorCode, PredictionResult

log = structlog.get_logger(__name__)

DLQ_REFUSED_HEADER = "birdwatch-refused"  # why Kafka refused the fuller form of a DLQ record
_MAX_REFERENCE_KEY = 1024  # a longer input key is left out of a reference record
_MAX_REASON = 1000


def record_size(outcome: Outcome) -> int:
    """The bytes aiokafka counts for `outcome` against `max_request_size`, headers included: an
    upper bound of the one-record batch the broker checks against `max.message.bytes`."""
    headers: list[tuple[str, bytes | None]] = list(outcome.headers)
    return int(
        DefaultRecordBatchBuilder.estimate_size_in_bytes(outcome.key, outcome.value, headers)
    )


@dataclass
class RecordLimits:
    """The largest record each topic takes: the producer's `max_request_size`, or less when the
    topic's `max.message.bytes` (read from the broker at start) is smaller."""

    producer: int
    topics: dict[str, int] = field(default_factory=dict)

    def of(self, topic: str) -> int:
        return min(self.producer, self.topics.get(topic, self.producer))


class OutcomeGuard:
    """Fits outcomes under their topic's limit and picks the stand-in for a refused one."""

    def __init__(
        self, limits: RecordLimits, dlq_topic: str, model_name: str, metrics: Metrics
    ) -> None:
        self.limits = limits
        self._dlq_topic = dlq_topic
        self._model_name = model_name
        self._metrics = metrics

    def fit(self, outcome: Outcome) -> Outcome:
        """`outcome` when it fits its topic's limit, else its largest stand-in that does."""
        candidate = outcome
        # A reference is the smallest form: one over the limit (a limit of a few hundred bytes)
        # goes out as it is, and Kafka's refusal ends the ladder.
        while candidate.form != "reference":
            size, limit = record_size(candidate), self.limits.of(candidate.topic)
            if size <= limit:
                break
            reason = f"{size} bytes, over the {limit}-byte limit of {candidate.topic}"
            smaller = self._next(candidate, Verdict.RECORD, reason, cut_to=limit)
            if smaller is None:
                break
            candidate = smaller
        return candidate

    def replacement(self, outcome: Outcome, verdict: Verdict, reason: str) -> Outcome | None:
        """The stand-in for `outcome`, refused for good (`verdict` RECORD or DESTINATION), fitted
        under its limit; None when nothing is left to try."""
        smaller = self._next(outcome, verdict, reason, cut_to=None)
        return None if smaller is None else self.fit(smaller)

    # --- the ladder ----------------------------------------------------------------------------

    def _next(
        self, outcome: Outcome, verdict: Verdict, reason: str, cut_to: int | None
    ) -> Outcome | None:
        refused = outcome.topic if verdict is Verdict.DESTINATION else None
        smaller: Outcome | None = None
        if outcome.form == "original" and outcome.kind != "dlq" and refused is None:
            smaller = self._internal_result(outcome, reason)
        elif outcome.form == "original" and outcome.kind == "dlq" and cut_to is not None:
            smaller = self._truncated(outcome, reason, cut_to)
        if smaller is None and outcome.form != "reference" and refused != self._dlq_topic:
            smaller = self._reference(outcome, reason)
        if smaller is None:
            log.error(
                "outcome_unwritable",
                **outcome.log_fields(),
                form=outcome.form,
                reason=reason,
            )
            return None
        log.warning(
            "outcome_replaced",
            **outcome.log_fields(),
            form=outcome.form,
            replaced_by=smaller.form,
            reason=reason,
        )
        self._metrics.outcome_fallbacks.labels(smaller.form).inc()
        return smaller

    def _internal_result(self, outcome: Outcome, reason: str) -> Outcome | None:
        try:
            original = orjson.loads(outcome.value)
            event_id, url = str(original["id"]), str(original["url"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        message = f"the result could not be written to {outcome.topic}: {reason}"
        result = PredictionResult.failed(
            event_id, url, ErrorCode.INTERNAL, message[:_MAX_REASON], self._model_name
        )
        return replace(
            outcome,
            value=result.to_json(),
            kind="error",
            form="internal",
            code=ErrorCode.INTERNAL.value,
        )

    def _truncated(self, outcome: Outcome, reason: str, limit: int) -> Outcome | None:
        headers = _with(
            outcome.headers,
            {
                DLQ_FORM_HEADER: b"truncated",
                DLQ_REFUSED_HEADER: reason.encode()[:_MAX_REASON],
            },
        )
        cut = replace(outcome, value=b"", headers=headers, form="truncated")
        room = limit - record_size(cut)
        if room <= 0:
            return None  # the key and headers alone are too large: only a reference is left
        cut.value = outcome.value[:room]
        # The length prefixes of a longer value may take a few more bytes than the estimate of
        # an empty one: shrink by the overshoot until it fits.
        while (over := record_size(cut) - limit) > 0:
            cut.value = cut.value[: len(cut.value) - over]
        return cut

    def _reference(self, outcome: Outcome, reason: str) -> Outcome:
        ref = outcome.ref
        if outcome.kind == "dlq":
            headers = _with(
                outcome.headers,
                {DLQ_FORM_HEADER: b"reference", DLQ_REFUSED_HEADER: reason.encode()[:_MAX_REASON]},
            )
        else:
            why = f"the result could not be written to {outcome.topic}: {reason}"
            headers = [
                (DLQ_REASON_HEADER, why.encode()[:_MAX_REASON]),
                (DLQ_CODE_HEADER, ErrorCode.INTERNAL.value.encode()),
                (DLQ_SOURCE_HEADER, source_of(ref).encode()),
                (DLQ_FORM_HEADER, b"reference"),
                (DLQ_ORIGINAL_SIZE_HEADER, str(len(outcome.value)).encode()),
                *((k, v) for k, v in outcome.headers if k in PROPAGATED_HEADERS),
            ]
        key = (
            outcome.key
            if outcome.key is not None and len(outcome.key) <= _MAX_REFERENCE_KEY
            else None
        )
        return Outcome(
            ref, self._dlq_topic, key, b"", "dlq", headers, form="reference", trace=outcome.trace
        )


def _with(headers: list[tuple[str, bytes]], values: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """`headers` with `values` set (replacing any of the same name)."""
    return [(k, v) for k, v in headers if k not in values] + list(values.items())
