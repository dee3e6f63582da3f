"""Bad input, property-based, through the real consumer: hypothesis draws arbitrary bytes, JSON
of wrong types, missing or huge fields, unicode, duplicated ids and extra fields; every record
ends as exactly one error/ok result or one dead letter, and the consumer keeps answering."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.testing.topics import TopicReader, produce, results_of
from consumer.testing.waiting import wait_until
from schemas import InvalidEventError, parse_event
from tests.conftest import LoopbackServer
from tests.consumer.service_support import ServiceSetupFactory, red_image
from tests.kafka_support import InProcessService

pytestmark = pytest.mark.kafka

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
ids = st.one_of(
    st.sampled_from(["dup-a", "dup-b"]),  # duplicated ids across records
    st.text(min_size=1, max_size=40),  # unicode
    st.text(min_size=129, max_size=200),  # too long
    st.integers(),
    st.none(),
)
urls = st.one_of(
    st.sampled_from(["file:///etc/passwd", "ftp://h/x", "data:,x", "gopher://h/", "http://"]),
    st.text(max_size=30),
    st.just("http://h/" + "x" * 3000),  # huge field
    json_values,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "id": ids,
        "url": urls,
        "submitted_at": json_values,
        "metadata": json_values,
        "extra": json_values,
    },
).map(lambda d: json.dumps(d).encode())
# Records that do name a usable id (unicode or duplicated) but are wrong otherwise.
answerable = st.fixed_dictionaries(
    {
        "id": st.one_of(st.sampled_from(["dup-a", "dup-b"]), st.text(min_size=1, max_size=40)),
        "url": urls,
    },
    optional={"submitted_at": json_values, "metadata": json_values, "extra": json_values},
).map(lambda d: json.dumps(d).encode())
poison = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    event_like,
    answerable,
)


def draw_poison(count: int) -> list[bytes]:
    """A varied, reproducible sample of bad records drawn by hypothesis."""
    drawn: list[bytes] = []

    @settings(
        max_examples=count, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(poison)
    def collect(value: bytes) -> None:
        drawn.append(value)

    collect()
    return drawn[:count]


def expected_id(value: bytes) -> str | None:
    """The id an error result must carry, or None for a dead letter (an ok event raises)."""
    try:
        event = parse_event(value)
    except InvalidEventError as exc:
        return exc.event_id
    return event.id


async def test_random_bad_records_each_get_one_outcome_and_the_consumer_stays_up(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    values = draw_poison(100)
    setup = await service_setup("poison-prop", partitions=3)
    red = red_image(http_server)
    # A drawn URL may name a real-looking host: fail such fetches fast instead of retrying.
    settings_ = setup.settings(fetch_timeout_s=2, fetch_retries=0)
    service = await InProcessService.start(settings_)
    try:
        await wait_until(lambda: len(service.owned) == 3, 30, "the member owning all partitions")
        good = [orjson.dumps({"id": f"good-{i}", "url": red}) for i in range(5)]
        records = values + good
        await produce(setup.bootstrap, setup.names.input, [(None, v) for v in records], (0, 1, 2))
        async with (
            TopicReader(setup.bootstrap, setup.names.results) as results,
            TopicReader(setup.bootstrap, setup.names.dlq) as dlq,
        ):

            async def all_answered() -> bool:
                await results.poll(100)
                await dlq.poll(100)
                return len(results.records) + len(dlq.records) >= len(records)

            await wait_until(all_answered, 60, "an outcome for every record")
            got: list[dict[str, Any]] = results_of(results.records)
            dead = list(dlq.records)
    finally:
        await service.stop()

    # Exactly one outcome per record: no record lost, none answered twice.
    assert len(got) + len(dead) == len(records)
    wanted_ids = [expected_id(v) for v in records]
    answered = sorted(i for i in wanted_ids if i is not None)
    assert sorted(r["id"] for r in got) == answered
    assert len(dead) == wanted_ids.count(None)
    assert sorted(r.value or b"" for r in dead) == sorted(
        v for v, i in zip(records, wanted_ids, strict=True) if i is None
    )
    assert all(dict(r.headers).get("birdwatch-error") for r in dead)
    by_id = {r["id"]: r for r in got}
    assert all(by_id[f"good-{i}"]["status"] == "ok" for i in range(5))
    assert all(r["status"] == "error" for r in got if not r["id"].startswith("good-"))
