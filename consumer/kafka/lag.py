"""Consumer lag and the age of the oldest uncommitted record per owned partition, for `/metrics`
and the throughput log."""

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


def measure_record_ages(
    tracker: OffsetTracker[TopicPartition], owned: Iterable[TopicPartition], metrics: Metrics
) -> float:
    """Set the per-partition gauge of the oldest uncommitted record's age; returns the largest.

    Lag counts records not yet *read*: a record read but never finished leaves it at 0. This
    age is what shows such a stuck partition."""
    oldest = 0.0
    for tp in list(owned):
        age = tracker.oldest_uncommitted_age(tp)
        metrics.oldest_uncommitted.labels(tp.topic, str(tp.partition)).set(age)
        oldest = max(oldest, age)
    return oldest


def forget_lag(metrics: Metrics, partitions: Iterable[TopicPartition]) -> None:
    """Drop the gauges of partitions this member no longer owns."""
    for tp in partitions:
        for gauge in (metrics.consumer_lag, metrics.oldest_uncommitted):
            with contextlib.suppress(KeyError):
                gauge.remove(tp.topic, str(tp.partition))
