"""`birdwatch publish`: one `ImageEvent` per URL on the input topic."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TextIO

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from consumer import tracing
from consumer.config import Settings
from consumer.kafka.clients import client_options
from consumer.kafka.reach import started
from schemas import ImageEvent

log = structlog.get_logger(__name__)


async def publish(settings: Settings, urls: list[str], as_json: bool, out: TextIO) -> int:
    """Produce one `ImageEvent` per URL with a generated id; exit 1 if some URL is invalid.
    Raises `KafkaUnreachableError` when no broker answers."""
    producer = AIOKafkaProducer(
        **client_options(settings), acks="all", enable_idempotence=True, linger_ms=5
    )
    bad = 0
    async with started(producer, settings.kafka_bootstrap_servers):
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
            # Each event starts its own trace; serve continues it from the header.
            with tracing.start_publish(settings.input_topic, event_id, url) as span:
                headers = tracing.with_context([], span)
                ack = await producer.send(
                    settings.input_topic, value, key=event_id.encode(), headers=headers
                )
            acks.append(ack)
            out.write(
                orjson.dumps({"id": event_id, "url": url}).decode() + "\n"
                if as_json
                else f"{event_id} {url}\n"
            )
        await asyncio.gather(*acks)
    log.info("published", events=len(urls) - bad, invalid=bad, topic=settings.input_topic)
    return 1 if bad else 0
