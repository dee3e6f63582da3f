"""`birdwatch topics create`: the input, results and dead-letter topics, created if missing."""

from __future__ import annotations

from typing import TextIO

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from consumer.config import Settings
from consumer.kafka.clients import client_options
from consumer.kafka.reach import started

log = structlog.get_logger(__name__)


async def create_topics(settings: Settings, partitions: int, replication: int, out: TextIO) -> int:
    """Create the input, results and DLQ topics when missing (idempotent, race-free: the broker
    answers per topic whether it created it or it already existed). Raises
    `KafkaUnreachableError` when no broker answers."""
    wanted = [settings.input_topic, settings.results_topic, settings.dlq_topic]
    admin = AIOKafkaAdminClient(**client_options(settings))
    async with started(admin, settings.kafka_bootstrap_servers):
        response = await admin.create_topics([NewTopic(t, partitions, replication) for t in wanted])
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
