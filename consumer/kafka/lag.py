"""Consumer lag per owned partition, for `/metrics` and the throughput log."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka import TopicPartition

from consumer.kafka.clients import GroupConsumer
from consumer.kafka.offsets import OffsetTracker
from consumer.metrics import Metrics


async def measure_lag(
    consumer: GroupConsumer,
    tracker: OffsetTracker[TopicPartition],
    owned: Iterable[TopicPartition],
    metrics: Metrics,
) -> int:
    """Records between what we have read (or committed, before the first read) and the end of
    each owned partition; sets the per-partition gauge and returns the total."""
    total = 0
    for tp in list(owned):
        end = consumer.highwater(tp)
        if end is None:
            continue  # no fetch response for it yet
        position = tracker.next_offset(tp)
        if position is None:
            with contextlib.suppress(Exception):
                position = await consumer.committed(tp)
        if position is None:
            continue
        lag = max(0, end - position)
        total += lag
        metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
    return total


def forget_lag(metrics: Metrics, partitions: Iterable[TopicPartition]) -> None:
    """Drop the gauges of partitions this member no longer owns."""
    for tp in partitions:
        with contextlib.suppress(KeyError):
            metrics.consumer_lag.remove(tp.topic, str(tp.partition))
