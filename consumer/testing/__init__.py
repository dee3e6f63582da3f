"""Birdwatch's test kit, for its tests and benchmarks (in the spirit of `bytewax.testing`).

Fakes at each boundary — `FakeClock` (every wait of the pipeline), `FakeFetcher`,
`FakeClassifier`, Kafka in memory (`MemoryKafka` and its clients) and a `KafkaService` running
on them (`MemberRun`) — plus the real things tests and benchmarks share: the one broker
manager (`consumer.testing.broker`), topic helpers, tiny generated models and archive writers.

Importing the kit imports neither pytest nor TensorFlow.
"""

from consumer.testing.clock import FakeClock, settle
from consumer.testing.fakes import (
    CLASSES,
    LABELS,
    FakeClassifier,
    FakeDecoder,
    FakeFetcher,
    decode_marker,
    fake_model,
    image_body,
)
from consumer.testing.memory_kafka import (
    MemoryAdmin,
    MemoryConsumer,
    MemoryKafka,
    MemoryProducer,
    memory_clients,
)
from consumer.testing.service import FakeRuntime, MemberRun
from consumer.testing.waiting import free_port, wait_until

__all__ = [
    "CLASSES",
    "LABELS",
    "FakeClassifier",
    "FakeClock",
    "FakeDecoder",
    "FakeFetcher",
    "FakeRuntime",
    "MemberRun",
    "MemoryAdmin",
    "MemoryConsumer",
    "MemoryKafka",
    "MemoryProducer",
    "decode_marker",
    "fake_model",
    "free_port",
    "image_body",
    "memory_clients",
    "settle",
    "wait_until",
]
