"""The largest record each destination topic takes, as its broker reports it.

The producer only knows its own `max_request_size`; a topic may take less (`max.message.bytes`,
set per topic or inherited from the broker). A record between the two passes the producer's
check and is refused by the broker, and aiokafka's idempotent producer cannot write to that
partition again afterwards (OutOfOrderSequenceNumber on every later batch). So the member reads
the topics' limits once at start (DescribeConfigs) and fits its outcomes under them before they
are sent (consumer/kafka/outcome_guard.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from consumer.config import Settings
from consumer.kafka.clients import PRODUCER_BATCH_BYTES, KafkaClients, client_options

log = structlog.get_logger(__name__)

MAX_MESSAGE_BYTES = "max.message.bytes"
_READ_TIMEOUT_S = 15.0


async def read_topic_limits(
    clients: KafkaClients, settings: Settings, topics: Iterable[str]
) -> dict[str, int]:
    """`max.message.bytes` of each of `topics` that exists. Best effort: a broker that does not
    answer in time, or refuses DescribeConfigs, leaves a topic out (the producer's own limit
    then applies, and the broker's refusal is handled when it comes)."""
    wanted = sorted(set(topics))
    admin = clients.admin(**client_options(settings))
    try:
        async with asyncio.timeout(_READ_TIMEOUT_S):
            await admin.start()
            responses = await admin.describe_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, t, {MAX_MESSAGE_BYTES: None})
                    for t in wanted
                ]
            )
    except Exception as exc:  # any failure only means "limits unknown"
        log.warning(
            "topic_limits_unknown", topics=wanted, error=type(exc).__name__, detail=str(exc)
        )
        return {}
    finally:
        await admin.close()
    limits = parse_limits(responses)
    for topic in wanted:
        limit = limits.get(topic)
        if limit is None:
            log.warning("topic_limit_unknown", topic=topic)
        elif limit < PRODUCER_BATCH_BYTES:
            # Small records share a batch of up to PRODUCER_BATCH_BYTES, which such a topic
            # refuses as a whole although each record fits.
            log.warning("topic_limit_below_batch_size", topic=topic, max_message_bytes=limit)
    log.info("topic_limits", max_message_bytes=limits)
    return limits


def parse_limits(responses: Iterable[Any]) -> dict[str, int]:
    """`{topic: max.message.bytes}` from DescribeConfigs responses (any version: each resource
    is `(error_code, error_message, resource_type, name, [(config name, value, ...), ...])`);
    topics with an error (e.g. unknown) are left out."""
    limits: dict[str, int] = {}
    for response in responses:
        for error_code, _message, _type, name, entries in response.resources:
            if error_code != 0:
                continue
            for entry in entries:
                if entry[0] == MAX_MESSAGE_BYTES and str(entry[1]).isdigit():
                    limits[name] = int(entry[1])
    return limits
