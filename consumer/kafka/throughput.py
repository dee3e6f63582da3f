"""The periodic picture of a member: lag and record-age gauges every few seconds, and a
`throughput` log line every summary interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from aiokafka import TopicPartition

from consumer.kafka.clients import GroupConsumer
from consumer.kafka.delivery import Delivery
from consumer.kafka.lag import measure_lag, measure_record_ages
from consumer.metrics import Metrics

log = structlog.get_logger(__name__)


async def report_throughput(
    stop: asyncio.Event,
    consumer: GroupConsumer,
    delivery: Delivery,
    metrics: Metrics,
    owned: Callable[[], frozenset[TopicPartition]],
    paused: Callable[[], bool],
    summary_interval_s: float,
) -> None:
    """Until `stop` is set: measure the owned partitions' lag and oldest uncommitted record
    (at least every 5 s), and log the throughput since the last summary."""
    last_time, last_count = time.monotonic(), 0
    next_summary = last_time + summary_interval_s
    while not stop.is_set():
        await asyncio.sleep(min(5.0, summary_interval_s))
        lag = await measure_lag(consumer, delivery.tracker, owned(), metrics)
        oldest_s = measure_record_ages(delivery.tracker, owned(), metrics)
        now = time.monotonic()
        if now < next_summary:
            continue
        produced = metrics.outcomes_total
        log.info(
            "throughput",
            images_per_s=round((produced - last_count) / (now - last_time), 2),
            results=int(produced),
            in_flight=delivery.tracker.unfinished(),
            lag=lag,
            oldest_uncommitted_s=round(oldest_s, 1),
            partitions=len(owned()),
            paused=paused(),
        )
        last_time, last_count = now, produced
        next_summary = now + summary_interval_s
