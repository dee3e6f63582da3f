"""The event contracts: parsing, validation and serialisation."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from schemas import (
    ErrorCode,
    ImageEvent,
    InvalidEventError,
    Prediction,
    PredictionResult,
    parse_event,
)


def test_parses_a_full_event() -> None:
    event = parse_event(
        b'{"id": "a1", "url": "https://example.com/b.jpg", '
        b'"submitted_at": "2026-01-02T03:04:05Z", "metadata": {"camera": "x"}}'
    )
    assert event.id == "a1"
    assert event.url == "https://example.com/b.jpg"
    assert event.submitted_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert event.metadata == {"camera": "x"}


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    event = parse_event('{"id": "a", "url": "HTTP://h/x", "new_field": [1, 2]}')
    assert event.url == "HTTP://h/x"
    assert not hasattr(event, "new_field")


@pytest.mark.parametrize(
    ("raw", "reason", "event_id"),
    [
        (b"not json", "not JSON", None),
        (b"[1, 2]", "expected a JSON object", None),
        (b'"text"', "expected a JSON object", None),
        (b'{"url": "http://h/x"}', "id: Field required", None),
        (b'{"id": "", "url": "http://h/x"}', "id:", None),
        (b'{"id": 42, "url": "http://h/x"}', "id:", None),
        (b'{"id": "' + b"x" * 129 + b'", "url": "http://h/x"}', "id:", None),
        (b'{"id": "a", "url": "file:///etc/passwd"}', "http:// or https://", "a"),
        (b'{"id": "a", "url": "ftp://h/x"}', "http:// or https://", "a"),
        (b'{"id": "a", "url": "http://"}', "http:// or https://", "a"),
        (b'{"id": "a", "url": "http://h/' + b"x" * 2048 + b'"}', "url:", "a"),
        (b'{"id": "a"}', "url: Field required", "a"),
        (b'{"id": "a", "url": 7}', "url:", "a"),
        (b'{"id": "a", "url": "http://h/x", "submitted_at": "yesterday"}', "submitted_at", "a"),
        (b'{"id": "a", "url": "http://h/x", "metadata": [1]}', "metadata", "a"),
    ],
)
def test_invalid_events_say_why_and_keep_a_usable_id(
    raw: bytes, reason: str, event_id: str | None
) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event(raw)
    assert reason in info.value.reason
    assert info.value.event_id == event_id


def test_invalid_event_keeps_the_url_when_it_is_a_string() -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event(b'{"id": "a", "url": "gopher://h/x"}')
    assert info.value.url == "gopher://h/x"


def test_ok_result_round_trips_through_json() -> None:
    preds = [Prediction(label_id=i, label=f"b{i}", score=0.5 - i / 10) for i in range(3)]
    result = PredictionResult.ok("a", "http://h/x", preds, "m", {"total": 1.5})
    data = orjson.loads(result.to_json())
    assert data["status"] == "ok"
    assert data["error"] is None
    assert [p["label_id"] for p in data["predictions"]] == [0, 1, 2]
    assert PredictionResult.model_validate(data) == result


def test_error_result_carries_code_and_message() -> None:
    result = PredictionResult.failed("a", "http://h/x", ErrorCode.TIMEOUT, "slow", "m")
    data = orjson.loads(result.to_json())
    assert data["status"] == "error"
    assert data["error"] == {"code": "timeout", "message": "slow"}
    assert data["predictions"] == []
    assert data["processed_at"].endswith("Z") or "+00:00" in data["processed_at"]


def test_events_are_immutable() -> None:
    event = ImageEvent(id="a", url="http://h/x")
    with pytest.raises(ValueError, match="frozen"):
        event.id = "b"  # type: ignore[misc]
