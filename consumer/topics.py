"""Commands for users of the topics: create them, publish image events, follow results."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import TextIO

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from pydantic import ValidationError

from consumer.config import ProcessingGuarantee, Settings
from consumer.kafka_config import client_options
from schemas import ImageEvent, PredictionResult

log = structlog.get_logger(__name__)


async def create_topics(settings: Settings, partitions: int, replication: int, out: TextIO) -> int:
    """Create the input, results and DLQ topics when missing (idempotent, race-free: the broker
    answers per topic whether it created it or it already existed)."""
    wanted = [settings.input_topic, settings.results_topic, settings.dlq_topic]
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(t, partitions, replication) for t in wanted])
    finally:
        await admin.close()
    failed = 0
    for topic, code, message in response.topic_errors:
        if code in (0, TopicAlreadyExistsError.errno):
            state = "created" if code == 0 else "exists"
            out.write(f"{topic}: {state}\n")
            log.info("topic_ready", topic=topic, state=state, partitions=partitions)
        else:
            failed += 1
            out.write(f"{topic}: failed: {message or for_code(code).__name__}\n")
            log.error("topic_failed", topic=topic, code=code, message=message)
    return 1 if failed else 0


async def publish(settings: Settings, urls: list[str], as_json: bool, out: TextIO) -> int:
    """Produce one `ImageEvent` per URL with a generated id; exit 1 if some URL is invalid."""
    producer = AIOKafkaProducer(
        **client_options(settings), acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    bad = 0
    try:
        acks = []
        for url in urls:
            event_id = uuid.uuid4().hex
            try:
                event = ImageEvent(id=event_id, url=url, submitted_at=datetime.now(UTC))
            except ValidationError:
                bad += 1
                log.error("invalid_url", url=url[:200])
                continue
            value = orjson.dumps(event.model_dump(mode="json", exclude_none=True))
            acks.append(await producer.send(settings.input_topic, value, key=event_id.encode()))
            out.write(
                orjson.dumps({"id": event_id, "url": url}).decode() + "\n"
                if as_json
                else f"{event_id} {url}\n"
            )
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    log.info("published", events=len(urls) - bad, invalid=bad, topic=settings.input_topic)
    return 1 if bad else 0


async def follow_results(
    settings: Settings,
    from_beginning: bool,
    max_results: int | None,
    idle_timeout_s: float | None,
    as_json: bool,
    out: TextIO,
    stop: asyncio.Event | None = None,
) -> int:
    """Print results as they arrive; stop after `max_results` or `idle_timeout_s` of silence."""
    eos = settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE
    consumer = AIOKafkaConsumer(
        settings.results_topic,
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        isolation_level="read_committed" if eos else "read_uncommitted",
    )
    await consumer.start()
    seen = 0
    last = time.monotonic()
    try:
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
                    _print_result(record.value or b"", as_json, out)
    finally:
        await consumer.stop()
    return 0


def _print_result(value: bytes, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(value.decode(errors="replace") + "\n")
    else:
        try:
            result = PredictionResult.model_validate_json(value)
        except ValidationError:
            out.write(f"(unreadable result) {value[:200]!r}\n")
            return
        if result.status == "ok":
            best = ", ".join(f"{p.label} {p.score:.1%}" for p in result.predictions)
            out.write(f"{result.id} ok {best} <- {result.url}\n")
        else:
            assert result.error is not None
            error = f"{result.error.code.value}: {result.error.message}"
            out.write(f"{result.id} error {error} <- {result.url}\n")
    out.flush()
