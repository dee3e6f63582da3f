"""Reading the destination topics' `max.message.bytes` at start (consumer/kafka/topic_limits.py).
The real broker's answer is read in test_oversized_records_kafka.py; here, what the member does
when the answer is partial, odd or missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaConnectionError
from structlog.testing import capture_logs

from consumer.config import Settings
from consumer.kafka.clients import KafkaClients
from consumer.kafka.produce_errors import missing_topics_via
from consumer.kafka.topic_limits import parse_limits, read_topic_limits
from consumer.testing import MemoryKafka, memory_clients


@dataclass
class Response:
    resources: list[tuple[Any, ...]]


@dataclass
class Admin:
    """Stands in for AIOKafkaAdminClient: answers DescribeConfigs with `responses`."""

    responses: list[Response] = field(default_factory=list)
    fails: BaseException | None = None
    closed: int = 0
    asked: list[str] = field(default_factory=list)

    async def start(self) -> None:
        if self.fails is not None:
            raise self.fails

    async def close(self) -> None:
        self.closed += 1

    async def describe_configs(
        self, config_resources: list[Any], include_synonyms: bool = False
    ) -> list[Response]:
        self.asked = [r.name for r in config_resources]
        return self.responses


def clients_with(admin: Admin) -> KafkaClients:
    return KafkaClients(admin=lambda **_: admin)


def entry(name: str, value: str) -> tuple[Any, ...]:
    return (name, value, False, 5, False, [])  # v1+: name, value, read-only, source, ...


async def test_limits_of_the_topics_that_exist(make_settings: Any) -> None:
    admin = Admin(
        [
            Response(
                [
                    (0, "", 2, "bird-predictions", [entry("max.message.bytes", "1048588")]),
                    (0, "", 2, "bird-images.dlq", [entry("max.message.bytes", "8192")]),
                    (3, "unknown", 2, "nope", []),
                ]
            )
        ]
    )
    settings: Settings = make_settings()
    with capture_logs() as logs:
        limits = await read_topic_limits(
            clients_with(admin), settings, ["bird-predictions", "bird-images.dlq", "nope"]
        )
    assert limits == {"bird-predictions": 1_048_588, "bird-images.dlq": 8192}
    assert admin.asked == ["bird-images.dlq", "bird-predictions", "nope"]
    assert admin.closed == 1
    events = {e["event"]: e for e in logs}
    assert events["topic_limit_unknown"]["topic"] == "nope"
    # Under the producer's 16 KiB batch: small records sharing a batch could be refused.
    assert events["topic_limit_below_batch_size"]["topic"] == "bird-images.dlq"
    assert events["topic_limits"]["max_message_bytes"] == limits


async def test_a_broker_that_cannot_tell_leaves_the_producer_limit(make_settings: Any) -> None:
    admin = Admin(fails=KafkaConnectionError("Unable to bootstrap"))
    with capture_logs() as logs:
        assert await read_topic_limits(clients_with(admin), make_settings(), ["t"]) == {}
    assert admin.closed == 1
    [warning] = [e for e in logs if e["event"] == "topic_limits_unknown"]
    assert warning["error"] == "KafkaConnectionError"


def test_odd_entries_are_left_out() -> None:
    responses = [
        Response(
            [
                (0, "", 2, "a", [entry("retention.ms", "1"), entry("max.message.bytes", "x")]),
                (0, "", 2, "b", [entry("max.message.bytes", "2048")]),
            ]
        )
    ]
    assert parse_limits(responses) == {"b": 2048}


async def test_the_in_memory_kafka_tells_its_topics_and_limits(make_settings: Any) -> None:
    kafka = MemoryKafka()
    kafka.create_topic("results", 1)
    kafka.create_topic("dlq", 1)
    kafka.max_message_bytes["dlq"] = 32_768
    clients = memory_clients(kafka)
    limits = await read_topic_limits(clients, make_settings(), ["results", "dlq", "absent"])
    assert limits == {"dlq": 32_768}  # "results" keeps the broker's default: not reported
    missing = missing_topics_via(clients.admin)
    assert (await missing("absent"), await missing("dlq")) == (True, False)
