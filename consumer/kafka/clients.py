"""The Kafka clients the adapter uses: their options from `Settings`, and how they are made.

The service never constructs aiokafka classes itself: it is given a `KafkaClients`, so its
logic runs against in-memory fakes in unit tests and against aiokafka in production. The
protocols below list exactly what the adapter calls.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from consumer.config import ProcessingGuarantee, Settings
from consumer.kafka.membership import AiokafkaGroupSession, GroupSession

# The result producer's limits (aiokafka's defaults, named so the outcome guard uses the same):
# the largest record it sends, and the batch that small records share.
PRODUCER_MAX_REQUEST_BYTES = 1_048_576
PRODUCER_BATCH_BYTES = 16_384


class GroupConsumer(Protocol):
    """The part of `AIOKafkaConsumer` a consumer-group member uses."""

    def subscribe(self, topics: list[str], *, listener: ConsumerRebalanceListener) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...

    async def committed(self, partition: TopicPartition) -> int | None: ...

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None: ...


class Producer(Protocol):
    """The part of `AIOKafkaProducer` the delivery strategies use."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...

    async def partitions_for(self, topic: str) -> set[int]:
        """Waits for `topic`'s metadata (raises `UnknownTopicOrPartitionError` after
        `request_timeout_ms` without it)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], group_id: str
    ) -> None: ...


class TopicAdmin(Protocol):
    """The part of `AIOKafkaAdminClient` the member uses: its topics' limits, and whether a topic
    exists."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def describe_configs(
        self, config_resources: list[ConfigResource], include_synonyms: bool = False
    ) -> list[Any]: ...

    async def list_topics(self) -> list[str]: ...


@dataclass(frozen=True)
class KafkaClients:
    """Factories of the member's clients, called with aiokafka's keyword arguments, and of the
    group session (leaving the group) over the consumer made."""

    consumer: Callable[..., GroupConsumer] = AIOKafkaConsumer
    producer: Callable[..., Producer] = AIOKafkaProducer
    group_session: Callable[[GroupConsumer], GroupSession] = AiokafkaGroupSession
    admin: Callable[..., TopicAdmin] = AIOKafkaAdminClient


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for bootstrap servers and security; secrets stay in here."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        password = settings.kafka_sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def member_options(settings: Settings) -> dict[str, Any]:
    """The group member's consumer: manual commits, our session and rebalance timeouts."""
    eos = settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE
    # The group waits this long for a member to rejoin: longer than our revoke handler may
    # take, or the member is dropped mid-revoke and its work redone (aiokafka's default is
    # the session timeout). The JoinGroup request may take as long.
    rebalance_ms = settings.session_timeout_ms + int(settings.revoke_timeout_s * 1000)
    return {
        **client_options(settings),
        "group_id": settings.group_id,
        "group_instance_id": settings.instance_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed" if eos else "read_uncommitted",
        "session_timeout_ms": settings.session_timeout_ms,
        # Members learn of a rebalance at their next heartbeat: this bounds each handover.
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "rebalance_timeout_ms": rebalance_ms,
        "request_timeout_ms": max(40_000, rebalance_ms + 5_000),
        "client_id": f"birdwatch-{settings.instance_id or socket.gethostname()}",
    }


def result_producer_options(settings: Settings) -> dict[str, Any]:
    """The member's producer: idempotent with acks=all; transactional for exactly-once."""
    options: dict[str, Any] = {
        **client_options(settings),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_request_size": PRODUCER_MAX_REQUEST_BYTES,
        "max_batch_size": PRODUCER_BATCH_BYTES,
    }
    if settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE:
        member = settings.instance_id or _process_name()
        options["transactional_id"] = f"birdwatch-{settings.group_id}-{member}"
        options["transaction_timeout_ms"] = settings.transaction_timeout_ms
    return options


def describe_connection(settings: Settings) -> dict[str, Any]:
    """What may be logged about the connection: never the password."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_username": settings.kafka_sasl_username,
        "ssl_cafile": settings.kafka_ssl_cafile,
    }


def _process_name() -> str:
    # Without an instance id, a member-unique id keeps two local consumers (also two in one
    # process) from fencing each other.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
