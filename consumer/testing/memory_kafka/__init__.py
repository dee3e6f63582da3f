"""Kafka in memory: a cluster, its group members and producers, behind the protocols of
`consumer.kafka.clients`, so the adapter's logic is tested in milliseconds without a broker.

    kafka = MemoryKafka(default_partitions=3)
    service = KafkaService(settings, runtime, model, metrics, state, memory_clients(kafka))
"""

from __future__ import annotations

import functools

from consumer.kafka.clients import KafkaClients
from consumer.testing.memory_kafka.admin import MemoryAdmin
from consumer.testing.memory_kafka.cluster import MemoryKafka, StoredRecord, Transaction
from consumer.testing.memory_kafka.consumer import MemoryConsumer
from consumer.testing.memory_kafka.group import Group
from consumer.testing.memory_kafka.journal import Event, Journal
from consumer.testing.memory_kafka.offsets import Commit, GroupOffsets
from consumer.testing.memory_kafka.producer import MemoryProducer

__all__ = [
    "Commit",
    "Event",
    "Group",
    "GroupOffsets",
    "Journal",
    "MemoryAdmin",
    "MemoryConsumer",
    "MemoryKafka",
    "MemoryProducer",
    "StoredRecord",
    "Transaction",
    "memory_clients",
]


def memory_clients(kafka: MemoryKafka) -> KafkaClients:
    """Client factories that make members and producers of `kafka`."""
    return KafkaClients(
        consumer=functools.partial(MemoryConsumer, kafka),
        producer=functools.partial(MemoryProducer, kafka),
        admin=functools.partial(MemoryAdmin, kafka),
    )
