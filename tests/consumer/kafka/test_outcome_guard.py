"""Outcomes fitted under their topic's limit, and the stand-ins of refused ones
(consumer/kafka/outcome_guard.py): pure logic, sizes as aiokafka's producer counts them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from consumer.kafka.outcome_guard import (
    DLQ_REFUSED_HEADER,
    OutcomeGuard,
    RecordLimits,
    record_size,
)
from consumer.kafka.outcomes import (
    DLQ_CODE_HEADER,
    DLQ_FORM_HEADER,
    DLQ_ORIGINAL_SIZE_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SOURCE_HEADER,
    Outcome,
    RecordRef,
    invalid_outcome,
    result_outcome,
)
from consumer.kafka.produce_errors import Verdict
from consumer.metrics import Metrics
from schemas import ErrorCode, InvalidEventError, Prediction, PredictionResult

MIB = 1_048_576
SOURCE = TopicPartition("bird-images", 4)
REF = RecordRef(SOURCE, 1234)


def guard(limit: int = MIB, **topics: int) -> OutcomeGuard:
    return OutcomeGuard(RecordLimits(limit, dict(topics)), "dlq", "birds_V1", Metrics())


def dlq_copy(value: bytes, key: bytes | None = b"k") -> Outcome:
    """What the service makes of an input record without a usable id."""
    record: ConsumerRecord[Any, Any] = ConsumerRecord(
        SOURCE.topic, SOURCE.partition, REF.offset, 0, 0, key, value, None, len(key or b""),
        len(value), [],
    )  # fmt: skip
    return invalid_outcome(REF, record, InvalidEventError("not JSON"), "results", "dlq", "m")


def result(url: str = "https://birds.example/a.jpg") -> Outcome:
    top3 = [
        Prediction(label_id=i, label=f"Species {i} with a long name", score=0.3) for i in (1, 2)
    ]
    timings = {"fetch": 12.5, "decode": 3.25, "queue": 8.0, "inference": 40.5, "total": 64.25}
    ok = PredictionResult.ok("id-1", url, top3, "birds_V1", timings)
    return result_outcome(REF, "results", ok)


def accepted_by_aiokafka(outcome: Outcome, limit: int) -> bool:
    """The check AIOKafkaProducer.send makes against max_request_size."""
    headers: list[tuple[str, bytes | None]] = list(outcome.headers)
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(outcome.key, outcome.value, headers)
    return bool(size <= limit)


def test_an_outcome_that_fits_goes_out_as_it_is() -> None:
    g = guard()
    for outcome in (result(), dlq_copy(b"x" * 1000)):
        assert g.fit(outcome) is outcome


def test_a_1_mb_dlq_copy_is_cut_to_fit_and_says_so() -> None:
    # The input record the broker took (value just under the producer's 1 MiB limit): its DLQ
    # copy adds five headers and no longer fits.
    value = bytes(range(256)) * 4096
    value = value[: MIB - 200]
    copy = dlq_copy(value)
    assert record_size(copy) > MIB
    assert not accepted_by_aiokafka(copy, MIB)
    g = guard()
    with capture_logs() as logs:
        cut = g.fit(copy)
    assert cut.form == "truncated"
    assert cut.topic == "dlq"
    assert cut.key == b"k"
    assert accepted_by_aiokafka(cut, MIB)
    assert value.startswith(cut.value)
    assert len(cut.value) >= MIB - 1000  # as much of the copy as fits
    headers = dict(cut.headers)
    assert headers[DLQ_FORM_HEADER] == b"truncated"
    assert headers[DLQ_ORIGINAL_SIZE_HEADER] == str(len(value)).encode()
    assert headers[DLQ_REASON_HEADER] == b"not JSON"
    assert headers[DLQ_SOURCE_HEADER] == b"bird-images/4/1234"
    assert b"limit" in headers[DLQ_REFUSED_HEADER]
    # Logged once, with where the input came from and why.
    [entry] = [e for e in logs if e["event"] == "outcome_replaced"]
    assert entry["topic"] == "bird-images"
    assert (entry["partition"], entry["offset"]) == (4, 1234)
    assert (entry["form"], entry["replaced_by"]) == ("original", "truncated")
    assert "limit" in entry["reason"]
    assert (
        g._metrics.registry.get_sample_value(
            "birdwatch_outcome_fallbacks_total", {"form": "truncated"}
        )
        == 1
    )


@given(
    limit=st.integers(min_value=400, max_value=70_000),
    size=st.integers(min_value=0, max_value=100_000),
    key=st.one_of(st.none(), st.binary(max_size=300)),
)
def test_a_fitted_dlq_record_always_fits_and_keeps_a_prefix(
    limit: int, size: int, key: bytes | None
) -> None:
    value = b"\xfe" * size
    fitted = guard(MIB, dlq=limit).fit(dlq_copy(value, key))
    assert accepted_by_aiokafka(fitted, limit)
    assert value.startswith(fitted.value)
    if fitted.form == "truncated":
        # Not cut more than the length prefixes of the value can take.
        assert record_size(fitted) > limit - 8


def test_the_smaller_of_the_producer_and_topic_limits_counts() -> None:
    copy = dlq_copy(b"x" * 50_000)
    assert guard(MIB).fit(copy) is copy
    assert guard(MIB, dlq=32_768).fit(copy).form == "truncated"
    assert guard(20_000, dlq=32_768).fit(copy).form == "truncated"
    assert record_size(guard(20_000, dlq=32_768).fit(copy)) <= 20_000


def test_a_copy_whose_key_alone_is_too_large_becomes_a_reference() -> None:
    copy = dlq_copy(b"v" * 10, key=b"K" * 40_000)
    ref = guard(MIB, dlq=32_768).fit(copy)
    assert ref.form == "reference"
    assert ref.key is None  # the key is what did not fit
    assert ref.value == b""
    headers = dict(ref.headers)
    assert headers[DLQ_FORM_HEADER] == b"reference"
    assert headers[DLQ_SOURCE_HEADER] == b"bird-images/4/1234"
    assert headers[DLQ_ORIGINAL_SIZE_HEADER] == b"10"


def test_a_result_over_the_limit_becomes_an_internal_error_then_a_reference() -> None:
    long_url = "https://birds.example/" + "a" * 2000
    outcome = result(long_url)
    internal = guard(MIB, results=record_size(outcome) - 1).fit(outcome)
    assert internal.form == "internal"
    assert internal.kind == "error"
    assert internal.topic == "results"
    assert internal.key == b"id-1"
    parsed = PredictionResult.model_validate_json(internal.value)
    assert (parsed.id, parsed.url, parsed.status) == ("id-1", long_url, "error")
    assert parsed.error is not None
    assert parsed.error.code is ErrorCode.INTERNAL
    assert "could not be written to results" in parsed.error.message
    # Too small even for an error result naming the URL: a reference on the DLQ.
    ref = guard(MIB, results=1000).fit(outcome)
    assert (ref.form, ref.topic, ref.kind, ref.key) == ("reference", "dlq", "dlq", b"id-1")
    assert dict(ref.headers)[DLQ_CODE_HEADER] == b"internal"


def test_refused_results_step_down_the_ladder() -> None:
    g = guard()
    outcome = result()
    internal = g.replacement(outcome, Verdict.RECORD, "CorruptRecordException")
    assert internal is not None
    assert internal.form == "internal"
    reference = g.replacement(internal, Verdict.RECORD, "CorruptRecordException")
    assert reference is not None
    assert (reference.form, reference.topic) == ("reference", "dlq")
    assert g.replacement(reference, Verdict.RECORD, "still refused") is None


def test_a_refused_destination_is_not_tried_again() -> None:
    g = guard()
    # The results topic refuses us: an error result there would be refused too.
    ref = g.replacement(result(), Verdict.DESTINATION, "TopicAuthorizationFailedError")
    assert ref is not None
    assert (ref.form, ref.topic) == ("reference", "dlq")
    headers = dict(ref.headers)
    assert headers[DLQ_CODE_HEADER] == b"internal"
    assert b"TopicAuthorizationFailedError" in headers[DLQ_REASON_HEADER]
    # The DLQ refuses us: nothing is left, and that is logged as an error.
    with capture_logs() as logs:
        assert g.replacement(dlq_copy(b"x"), Verdict.DESTINATION, "TopicAuthorization") is None
    [entry] = [e for e in logs if e["event"] == "outcome_unwritable"]
    assert entry["log_level"] == "error"
    assert (entry["partition"], entry["offset"], entry["destination"]) == (4, 1234, "dlq")


def test_a_copy_refused_for_another_reason_becomes_a_reference() -> None:
    g = guard()
    ref = g.replacement(dlq_copy(b"x" * 100), Verdict.RECORD, "CorruptRecordException")
    assert ref is not None
    assert ref.form == "reference"
    headers = dict(ref.headers)
    assert headers[DLQ_REFUSED_HEADER] == b"CorruptRecordException"
    assert headers[DLQ_REASON_HEADER] == b"not JSON"  # why it is on the DLQ at all
    assert ref.key == b"k"


def test_a_result_that_is_not_ours_goes_straight_to_a_reference() -> None:
    odd = Outcome(REF, "results", b"id", b"not json", "ok")
    ref = guard().replacement(odd, Verdict.RECORD, "x")
    assert ref is not None
    assert ref.form == "reference"


@pytest.mark.parametrize("kind", ["ok", "error"])
def test_stand_ins_count_as_what_they_are(kind: str) -> None:
    outcome = result()
    outcome.kind = kind
    internal = guard().replacement(outcome, Verdict.RECORD, "x")
    assert internal is not None
    assert internal.kind == "error"
    assert orjson.loads(internal.value)["error"]["code"] == "internal"
