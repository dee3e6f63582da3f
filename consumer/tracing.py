"""W3C trace context through Kafka headers, with the OpenTelemetry API.

Without an SDK configured every call here is a no-op (the API's default tracer). `publish`
starts a trace per event and puts its `traceparent` in the record's headers; `serve` continues
it: a `process` span per input record (from the headers it came with), one child span per stage
(fetch_wait, fetch, decode_wait, decode, queue, inference), and a `produce` span whose context
goes into the result's (or the DLQ copy's) headers, so subscribers continue the same trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

TRACER_NAME = "birdwatch"
TRACEPARENT = "traceparent"
# What the propagator may write (tracecontext + baggage by default): replaced, never doubled.
PROPAGATED_HEADERS = frozenset({TRACEPARENT, "tracestate", "baggage"})

Headers = Sequence[tuple[str, bytes]]


class _HeaderGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        found = [value.decode("latin-1") for name, value in carrier if name.lower() == key]
        return found or None

    def keys(self, carrier: Headers) -> list[str]:
        return [name for name, _ in carrier]


class _DictSetter(Setter[dict[str, str]]):
    def set(self, carrier: dict[str, str], key: str, value: str) -> None:
        carrier[key] = value


_GETTER, _SETTER = _HeaderGetter(), _DictSetter()


def tracer() -> trace.Tracer:
    # Looked up at each use: the provider is whatever the edge configured (or the no-op one).
    return trace.get_tracer(TRACER_NAME)


def context_from(headers: Headers | None) -> Context:
    """The trace context a record's headers carry (an empty context when they carry none)."""
    return propagate.extract(list(headers or ()), getter=_GETTER)


def with_context(headers: Iterable[tuple[str, bytes]], span: Span) -> list[tuple[str, bytes]]:
    """`headers` with the trace context of `span` (any context they had is replaced)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span), setter=_SETTER)
    kept = [(k, v) for k, v in headers if k.lower() not in PROPAGATED_HEADERS]
    return kept + [(k, v.encode("latin-1")) for k, v in carrier.items()]


def trace_id(headers: Headers | None) -> str | None:
    """The trace id of a record's `traceparent` header, as 32 hex digits; None without one."""
    context = trace.get_current_span(context_from(headers)).get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def url_host(url: str) -> str:
    return urlsplit(url).hostname or ""


def start_publish(topic: str, event_id: str, url: str) -> AbstractContextManager[Span]:
    """The root span of an event's trace, around its send."""
    return tracer().start_as_current_span(
        f"publish {topic}",
        kind=SpanKind.PRODUCER,
        attributes=_messaging(topic) | {"birdwatch.event_id": event_id, "url.host": url_host(url)},
    )


def start_process(headers: Headers | None, topic: str, partition: int, offset: int) -> Span:
    """The span of one input record, child of the context its headers carry; ended by
    `end_process` when its outcome is durable."""
    return tracer().start_span(
        f"process {topic}",
        context=context_from(headers),
        kind=SpanKind.CONSUMER,
        attributes=_messaging(topic)
        | {"messaging.destination.partition.id": str(partition), "messaging.kafka.offset": offset},
    )


def describe_event(span: Span | None, event_id: str, url: str) -> None:
    """Name the event a process span is about, once the record is parsed."""
    if span is not None:
        span.set_attributes({"birdwatch.event_id": event_id, "url.host": url_host(url)})


def record_stage(parent: Span | None, stage: str, seconds: float) -> None:
    """A child span of `parent` for a stage that just ended after `seconds`."""
    if parent is None or not parent.is_recording():
        return
    end = time.time_ns()
    span = tracer().start_span(
        stage,
        context=trace.set_span_in_context(parent),
        start_time=end - int(seconds * 1e9),
    )
    span.end(end_time=end)


def start_produce(parent: Span | None, topic: str) -> Span:
    """The span of writing one outcome, child of its record's process span."""
    context = trace.set_span_in_context(parent) if parent is not None else None
    return tracer().start_span(
        f"produce {topic}", context=context, kind=SpanKind.PRODUCER, attributes=_messaging(topic)
    )


def end_process(span: Span | None, kind: str, code: str = "", error: str | None = None) -> None:
    """End a record's span with what it became: "ok", "error" (with its `code`) or "dlq"."""
    if span is None:
        return
    span.set_attribute("birdwatch.outcome", kind)
    if code:
        span.set_attribute("error.type", code)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


def fail(span: Span, reason: str) -> None:
    span.set_status(Status(StatusCode.ERROR, reason))
    span.end()


def _messaging(topic: str) -> dict[str, str]:
    return {"messaging.system": "kafka", "messaging.destination.name": topic}


def configure_from_environment(environ: Mapping[str, str]) -> bool:
    """Install the SDK with an OTLP exporter when the standard variables ask for it (see
    `provider_from_environment`); returns whether tracing is on."""
    provider = provider_from_environment(environ)
    if provider is None:
        return False
    trace.set_tracer_provider(provider)
    return True


def provider_from_environment(environ: Mapping[str, str]) -> TracerProvider | None:
    """The OpenTelemetry SDK's provider exporting over OTLP/HTTP, when the `tracing` extra is
    installed and the standard variables ask for it (`OTEL_TRACES_EXPORTER=otlp`, or an
    `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`, unless `OTEL_SDK_DISABLED=true`); the exporter reads
    the other `OTEL_*` variables itself. None otherwise."""
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if exporter == "none" or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if exporter != "otlp" and not endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:  # pragma: no cover - the extra is installed wherever tests run
        return None
    # OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins over ours.
    named = "OTEL_SERVICE_NAME" in environ or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": "birdwatch"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
