"""Property-based: no input, however malformed, escapes `parse_event` as anything but a clean
`ImageEvent` or an `InvalidEventError` that knows whether an error result can answer it."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import ErrorCode, ImageEvent, InvalidEventError, PredictionResult, parse_event
from schemas.events import MAX_ID_CHARS

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
urls = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda s, rest: f"{s}://{rest}",
        st.sampled_from(["http", "https", "HTTP", "file", "ftp", "gopher", "data", "javascript"]),
        st.text(),
    ),
    st.text(min_size=2040, max_size=2100).map(lambda t: "http://h/" + t),
)
events = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=200), st.integers(), st.none(), json_values),
        "url": st.one_of(urls, json_values),
        "submitted_at": st.one_of(st.text(max_size=30), st.integers(), st.datetimes().map(str)),
        "metadata": json_values,
        "extra": json_values,
    },
)


def _outcome(raw: bytes) -> ImageEvent | InvalidEventError:
    try:
        return parse_event(raw)
    except InvalidEventError as exc:  # the only exception parse_event may raise
        return exc


def _check(raw: bytes) -> None:
    outcome = _outcome(raw)
    if isinstance(outcome, InvalidEventError):
        assert outcome.reason
        if outcome.event_id is not None:
            assert 1 <= len(outcome.event_id) <= MAX_ID_CHARS
            # An error result can always be built and serialised for it.
            failed = PredictionResult.failed(
                outcome.event_id, outcome.url, ErrorCode.INVALID_EVENT, outcome.reason, "m"
            )
            assert orjson.loads(failed.to_json())["id"] == outcome.event_id
        return
    assert outcome.url.lower().startswith(("http://", "https://"))
    assert 1 <= len(outcome.id) <= MAX_ID_CHARS


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    _check(json.dumps(value).encode())


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_event_shaped_objects(value: dict[str, Any]) -> None:
    _check(json.dumps(value).encode())


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=MAX_ID_CHARS), st.text(max_size=200))
def test_valid_events_round_trip_with_any_unicode(event_id: str, path: str) -> None:
    url = "https://example.org/" + path.replace(" ", "%20").replace("\n", "")
    if any(c.isspace() for c in url):
        return
    event = parse_event(orjson.dumps({"id": event_id, "url": url}))
    assert event.id == event_id
    result = PredictionResult.failed(event.id, event.url, ErrorCode.TIMEOUT, "t", "m")
    assert orjson.loads(result.to_json())["id"] == event_id
