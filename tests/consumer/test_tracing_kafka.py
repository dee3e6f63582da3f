"""One event's trace through the real broker: `birdwatch publish` starts it, `serve` continues
it (a process span with a span per stage and one for producing the result), the result record
carries it on, and `birdwatch results --json` shows its id. A record that is not even an event
keeps its publisher's trace on its DLQ copy."""

from __future__ import annotations

import io

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumer import tracing
from consumer.kafka import publish, results
from consumer.testing.topics import read_topic
from consumer.testing.waiting import wait_until
from tests.conftest import LoopbackServer
from tests.consumer.service_support import ServiceSetupFactory, red_image
from tests.kafka_support import InProcessService

pytestmark = pytest.mark.kafka

STAGES = {"fetch_wait", "fetch", "decode_wait", "decode", "queue", "inference"}
FOREIGN_TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def attribute(span: ReadableSpan, name: str) -> object:
    assert span.attributes is not None
    return span.attributes.get(name)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_one_event_is_traced_from_publish_to_its_result_record(
    guarantee: str,
    service_setup: ServiceSetupFactory,
    http_server: LoopbackServer,
    spans: InMemorySpanExporter,
) -> None:
    setup = await service_setup("trace", partitions=1)
    good = red_image(http_server)
    missing = http_server.add_bytes("/missing.jpg", b"gone", "text/plain", status=404)
    settings = setup.settings(processing_guarantee=guarantee)
    member = await InProcessService.start(settings)
    try:
        published = io.StringIO()
        assert await publish.publish(settings, [good, missing], True, published) == 0
        ids = [orjson.loads(line)["id"] for line in published.getvalue().splitlines()]
        producer = AIOKafkaProducer(bootstrap_servers=setup.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                setup.names.input, b"not an event", headers=[("traceparent", FOREIGN_TRACEPARENT)]
            )
        finally:
            await producer.stop()
        shown = io.StringIO()
        await results.follow_results(settings, True, 2, 60, True, shown)

        def all_ended() -> bool:
            return sum(s.name.startswith("process ") for s in spans.get_finished_spans()) == 3

        await wait_until(all_ended, 30, "the three records' process spans")
    finally:
        await member.stop()

    ended = list(spans.get_finished_spans())
    shown_by_id = {r["id"]: r for r in map(orjson.loads, shown.getvalue().splitlines())}
    for event_id in ids:
        (root,) = [
            s
            for s in ended
            if s.name.startswith("publish ") and attribute(s, "birdwatch.event_id") == event_id
        ]
        assert root.parent is None
        trace_id = f"{root.context.trace_id:032x}"
        # The publish span's child: this record's processing in serve, in the same trace.
        (process,) = children(ended, root)
        assert process.name == f"process {settings.input_topic}"
        assert attribute(process, "birdwatch.event_id") == event_id
        assert attribute(process, "url.host") == "127.0.0.1"
        stages = children(ended, process)
        (produce,) = [s for s in stages if s.name == f"produce {settings.results_topic}"]
        # ... and the result record carries the produce span's context to the subscriber.
        assert shown_by_id[event_id]["trace_id"] == trace_id
        if event_id == ids[0]:
            assert attribute(process, "birdwatch.outcome") == "ok"
            assert {s.name for s in stages} == {*STAGES, produce.name}
        else:
            # A failed download: no decode or inference, the error code on the span.
            assert attribute(process, "birdwatch.outcome") == "error"
            assert attribute(process, "error.type") == "http_status"
            assert "inference" not in {s.name for s in stages}
        for span in stages:
            assert span.context.trace_id == root.context.trace_id
            assert span.start_time is not None
            assert process.start_time is not None
            assert span.start_time >= process.start_time - 1_000_000  # 1 ms of clock skew

    # The record that is not an event: its DLQ copy continues the publisher's trace.
    (dead,) = await read_topic(setup.bootstrap, settings.dlq_topic, "read_committed")
    assert tracing.trace_id(dead.headers) == "4bf92f3577b34da6a3ce929d0e0e4736"
    (process,) = [
        s
        for s in ended
        if s.name.startswith("process ") and attribute(s, "birdwatch.outcome") == "dlq"
    ]
    assert process.parent is not None
    assert process.parent.span_id == 0x00F067AA0BA902B7
    (produce,) = children(ended, process)
    sent = dict(dead.headers)["traceparent"].decode()
    assert sent.split("-")[2] == f"{produce.context.span_id:016x}"
