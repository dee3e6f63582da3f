"""`MemoryAdmin`: what the member asks an admin client (the `TopicAdmin` protocol) of a
`MemoryKafka`: the topics it has, and their `max.message.bytes` when a test set one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka.admin.config_resource import ConfigResource

from consumer.testing.memory_kafka.cluster import MemoryKafka


@dataclass
class _Response:
    """The shape of aiokafka's DescribeConfigsResponse that the member reads."""

    resources: list[tuple[int, str, int, str, list[tuple[str, str, bool, int, bool, list[Any]]]]]


class MemoryAdmin:
    """Takes aiokafka's keyword arguments; answers from `kafka`."""

    def __init__(self, kafka: MemoryKafka, **options: Any) -> None:
        self.kafka = kafka
        self.options = options

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def list_topics(self) -> list[str]:
        return self.kafka.topic_names()

    async def describe_configs(
        self, config_resources: list[ConfigResource], include_synonyms: bool = False
    ) -> list[Any]:
        resources: list[Any] = []
        for resource in config_resources:
            limit = self.kafka.max_message_bytes.get(resource.name)
            if resource.name not in self.kafka.topic_names():
                resources.append((3, "unknown topic", 2, resource.name, []))
                continue
            entries: list[tuple[str, str, bool, int, bool, list[Any]]] = []
            if limit is not None:
                entries.append(("max.message.bytes", str(limit), False, 1, False, []))
            resources.append((0, "", 2, resource.name, entries))
        return [_Response(resources)]
