"""`birdwatch results`: follow the results topic and print each result."""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

import orjson
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from consumer import tracing
from consumer.config import ProcessingGuarantee, Settings
from consumer.kafka.clients import client_options
from consumer.kafka.reach import started
from consumer.run_report import one_line
from schemas import PredictionResult


async def follow_results(
    settings: Settings,
    from_beginning: bool,
    max_results: int | None,
    idle_timeout_s: float | None,
    as_json: bool,
    out: TextIO,
    stop: asyncio.Event | None = None,
) -> int:
    """Print results as they arrive; stop after `max_results` or `idle_timeout_s` of silence.
    Raises `KafkaUnreachableError` when no broker answers."""
    eos = settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE
    consumer = AIOKafkaConsumer(
        settings.results_topic,
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        isolation_level="read_committed" if eos else "read_uncommitted",
    )
    seen = 0
    async with started(consumer, settings.kafka_bootstrap_servers):
        last = time.monotonic()
        while not (stop and stop.is_set()):
            if max_results is not None and seen >= max_results:
                break
            if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                break
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    if max_results is not None and seen >= max_results:
                        break
                    seen += 1
                    last = time.monotonic()
                    trace_id = tracing.trace_id(record.headers)
                    _print_result(record.value or b"", as_json, out, trace_id)
    return 0


def _print_result(value: bytes, as_json: bool, out: TextIO, trace_id: str | None = None) -> None:
    if as_json:
        out.write(_with_trace_id(value, trace_id) + "\n")
    else:
        try:
            result = PredictionResult.model_validate_json(value)
        except ValidationError:
            out.write(f"(unreadable result) {value[:200]!r}\n")
            return
        if result.status == "ok":
            out.write(f"{result.id} ok {one_line(result)} <- {result.url}\n")
        else:
            assert result.error is not None
            error = f"{result.error.code.value}: {result.error.message}"
            out.write(f"{result.id} error {error} <- {result.url}\n")
    out.flush()


def _with_trace_id(value: bytes, trace_id: str | None) -> str:
    """The result's JSON, with `trace_id` added when its record carried a trace context."""
    if trace_id is not None:
        try:
            result = orjson.loads(value)
        except orjson.JSONDecodeError:
            result = None
        if isinstance(result, dict):
            return orjson.dumps({**result, "trace_id": trace_id}).decode()
    return value.decode(errors="replace")
