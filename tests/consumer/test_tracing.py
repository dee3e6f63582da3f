"""consumer/tracing.py: W3C trace context in Kafka headers, stage spans, the SDK from the
standard OTEL_* variables."""

from __future__ import annotations

import io

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from consumer import tracing
from consumer.kafka import results

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_traceparent_header_is_read_and_its_trace_id_shown() -> None:
    headers = [("content-type", b"application/json"), ("traceparent", TRACEPARENT.encode())]
    assert tracing.trace_id(headers) == "0af7651916cd43dd8448eb211c80319c"
    assert tracing.trace_id([]) is None
    assert tracing.trace_id(None) is None
    assert tracing.trace_id([("traceparent", b"garbage")]) is None


def test_a_record_continues_the_trace_of_its_headers_and_passes_it_on(
    spans: InMemorySpanExporter,
) -> None:
    incoming = [("traceparent", TRACEPARENT.encode())]
    process = tracing.start_process(incoming, "bird-images", 2, 41)
    tracing.describe_event(process, "ev-1", "https://photos.example:8443/a.jpg")
    produce = tracing.start_produce(process, "bird-predictions")
    outgoing = tracing.with_context([("traceparent", b"old"), ("x", b"1")], produce)
    produce.end()
    tracing.end_process(process, "error", "http_status")

    # The old context is replaced, never doubled; other headers are kept.
    assert [k for k, _ in outgoing].count("traceparent") == 1
    assert ("x", b"1") in outgoing
    assert tracing.trace_id(outgoing) == "0af7651916cd43dd8448eb211c80319c"
    ended = {s.name: s for s in spans.get_finished_spans()}
    process_span, produce_span = ended["process bird-images"], ended["produce bird-predictions"]
    assert process_span.parent is not None
    assert process_span.parent.span_id == 0xB7AD6B7169203331
    assert process_span.kind is SpanKind.CONSUMER
    assert process_span.attributes is not None
    assert process_span.attributes["birdwatch.event_id"] == "ev-1"
    assert process_span.attributes["url.host"] == "photos.example"
    assert process_span.attributes["error.type"] == "http_status"
    assert process_span.attributes["messaging.kafka.offset"] == 41
    assert produce_span.parent is not None
    assert produce_span.parent.span_id == process_span.context.span_id
    sent = dict(outgoing)["traceparent"].decode()
    assert sent.split("-")[2] == f"{produce_span.context.span_id:016x}"


def test_a_stage_span_covers_the_seconds_it_took(spans: InMemorySpanExporter) -> None:
    parent = tracing.tracer().start_span("process t")
    tracing.record_stage(parent, "decode", 0.25)
    tracing.record_stage(None, "decode", 1.0)  # no span: nothing recorded
    parent.end()
    (stage,) = [s for s in spans.get_finished_spans() if s.name == "decode"]
    assert stage.start_time is not None
    assert stage.end_time is not None
    assert abs((stage.end_time - stage.start_time) / 1e9 - 0.25) < 1e-3
    assert stage.parent is not None
    assert stage.parent.span_id == parent.get_span_context().span_id


def test_an_abandoned_record_ends_with_an_error_status(spans: InMemorySpanExporter) -> None:
    span = tracing.tracer().start_span("process t")
    tracing.end_process(span, "abandoned", error="partition revoked")
    (ended,) = spans.get_finished_spans()
    assert ended.status.status_code is StatusCode.ERROR
    assert ended.status.description == "partition revoked"


def test_without_an_sdk_the_incoming_context_passes_through() -> None:
    """The API's no-op tracer: no spans, but a result still carries its event's trace."""
    noop = trace.NoOpTracerProvider().get_tracer("t")
    parent = noop.start_span(
        "process", context=tracing.context_from([("traceparent", TRACEPARENT.encode())])
    )
    assert tracing.trace_id(tracing.with_context([], parent)) == "0af7651916cd43dd8448eb211c80319c"


def test_results_json_shows_the_trace_id() -> None:
    out = io.StringIO()
    results._print_result(
        b'{"id": "a", "status": "ok"}', True, out, "0af7651916cd43dd8448eb211c80319c"
    )
    results._print_result(b'{"id": "b", "status": "ok"}', True, out, None)
    results._print_result(b"not json", True, out, "0af7651916cd43dd8448eb211c80319c")
    lines = out.getvalue().splitlines()
    assert lines[0] == '{"id":"a","status":"ok","trace_id":"0af7651916cd43dd8448eb211c80319c"}'
    assert lines[1] == '{"id": "b", "status": "ok"}'
    assert lines[2] == "not json"


def test_the_sdk_is_installed_only_when_the_otel_variables_ask() -> None:
    assert tracing.provider_from_environment({}) is None
    assert tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "none"}) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert tracing.provider_from_environment({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    provider = tracing.provider_from_environment(endpoint)
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "birdwatch"
    provider.shutdown()
    named = tracing.provider_from_environment(
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "birds-eu"}
    )
    assert isinstance(named, TracerProvider)
    named.shutdown()
    assert tracing.configure_from_environment({}) is False
