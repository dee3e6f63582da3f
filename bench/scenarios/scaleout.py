"""*scale-out*: 1, 2 and 3 consumers of one group on a 6-partition topic, each pinned to one CPU
with one inference and one decode thread: the stand-in for one machine each.

For each count, the consumers start (consumer i on CPU i mod cores), the group settles, then a
burst of events is published and drained; throughput is events / (last result - first send).
The loopback internet, the broker and this driver are not pinned: they take their share of both
cores, as they would not on separate machines. With 2 cores, the third consumer shares a CPU with
the first: it shows what an over-subscribed node does, not a third machine.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import Backend, BenchContext, Size, fmt
from bench.kafka import (
    Publisher,
    ResultReader,
    delete_topics,
    service_env,
    wait_group_stable,
)
from bench.procs import CpuMeter, cpu_seconds
from bench.records import (
    ConsumerShare,
    Range,
    ScaleCount,
    ScaleoutResult,
    ScaleRun,
    scaled,
    to_json,
)
from bench.stats import ratio, spread, sustained_rate
from consumer.testing.serve import ServeProcess
from consumer.testing.topics import Topics, create_topics

NAME = "scaleout"
NEEDS_KAFKA = True


@dataclass(frozen=True)
class Config:
    consumers: tuple[int, ...] = (1, 2, 3)
    events: int = 600
    partitions: int = 6
    backend: Backend = "litert"
    size: Size = "small"
    rounds: int = 3  # 1 2 3, then 1 2 3 again...: medians, and ratios within a round
    timeout_s: float = 180.0


def cpu_for(index: int, cores: int) -> int:
    """Consumer `index` goes to CPU index mod cores (round robin over the allowed CPUs)."""
    allowed = sorted(os.sched_getaffinity(0))[:cores] or [0]
    return allowed[index % len(allowed)]


async def run_count(ctx: BenchContext, n: int, config: Config) -> ScaleRun:
    assert ctx.bootstrap is not None
    site = ctx.site
    topics = Topics.unique(f"bench-scale{n}")
    await create_topics(ctx.bootstrap, topics.names, config.partitions)
    cores = os.cpu_count() or 1
    serves: list[ServeProcess] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-cache-") as cache:
        env = {
            **service_env(ctx, config.backend, topics, cache, shutdown_timeout_s=10),
            "BIRDWATCH_INFERENCE_THREADS": "1",
            "BIRDWATCH_DECODE_THREADS": "1",
            "BIRDWATCH_SESSION_TIMEOUT_MS": "6000",
        }
        try:
            for i in range(n):
                log = ctx.out_dir / "logs" / NAME / f"serve-{n}-{i}.log"
                serves.append(ServeProcess(env, log, cpu_for(i, cores)))
            await asyncio.gather(*(s.wait_ready() for s in serves))
            settle_s = await wait_group_stable(ctx.bootstrap, topics.group, n, 60)
            cpu_before = [cpu_seconds(s.pid) or 0.0 for s in serves]
            meter = CpuMeter({f"consumer{i}": s.pid for i, s in enumerate(serves)})
            meter.start()
            async with (
                ResultReader(ctx.bootstrap, topics.results) as reader,
                Publisher(ctx.bootstrap, topics.input) as pub,
            ):
                ids = await pub.burst(site.photo_urls(config.size), config.events, f"n{n}")
                await reader.wait_for(ids, config.timeout_s)
            machine = meter.stop()
            cpu_after = [cpu_seconds(s.pid) or 0.0 for s in serves]
            per_consumer = []
            for s, before, after in zip(serves, cpu_before, cpu_after, strict=True):
                _, text = await s.get("/metrics")
                cpus = sorted(os.sched_getaffinity(s.pid))
                per_consumer.append(ConsumerShare(cpus, after - before, _results(text)))
        finally:
            await asyncio.gather(*(s.stop() for s in serves), return_exceptions=True)
            await delete_topics(ctx.bootstrap, topics)
    results = [reader.results[i] for i in ids]
    first_sent = min(pub.sent.at.values())
    done = [r.produced_ms / 1000 for r in results]
    drain = max(done) - first_sent
    return ScaleRun(
        consumers=n,
        events=len(ids),
        ok=sum(r.status == "ok" for r in results),
        drain_s=drain,
        throughput_per_s=len(ids) / drain,
        sustained_per_s=sustained_rate(done),
        group_settle_s=settle_s,
        per_consumer=per_consumer,
        cpu=dict(machine),
    )


def _results(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("birdwatch_results_produced_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def count_figures(runs: list[ScaleRun]) -> ScaleCount:
    """One consumer count over its rounds."""

    def median(values: list[float]) -> float:
        return spread(values).median

    return ScaleCount(
        throughput_per_s=median([r.throughput_per_s for r in runs]),
        drain_s=median([r.drain_s for r in runs]),
        throughput=Range.of(spread(r.throughput_per_s for r in runs)),
        drain=Range.of(spread(r.drain_s for r in runs)),
        sustained_per_s=median([_nan(r.sustained_per_s) for r in runs]),
        cpu_ms_per_image=median(
            [1000 * sum(c.cpu_s for c in r.per_consumer) / r.events for r in runs]
        ),
        consumers_busy=median([_nan(r.cpu.get("ours_busy")) for r in runs]),
        machine_busy=median([_nan(r.cpu.get("machine_busy")) for r in runs]),
        per_consumer=runs[-1].per_consumer,
        runs=runs,
    )


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


async def run(ctx: BenchContext, config: Config | None = None) -> dict[str, Any]:
    config = config or Config()
    if ctx.bootstrap is None:
        raise RuntimeError("the scale-out scenario needs a Kafka broker")
    rounds = [
        {str(n): await run_count(ctx, n, config) for n in config.consumers}
        for _ in range(config.rounds)
    ]
    counts = {n: count_figures([r[n] for r in rounds]) for n in map(str, config.consumers)}
    speedup: dict[str, Range] = {}
    if "1" in counts:
        for n in counts:
            speedup[n] = Range.of(
                spread(ratio(r[n].throughput_per_s, r["1"].throughput_per_s) for r in rounds)
            )
    record = ScaleoutResult(
        config.events, config.size, config.backend, os.cpu_count(), counts, speedup
    )
    return {
        "config": asdict(config),
        "cpus": record.cpus,
        "counts": {n: to_json(c) for n, c in record.counts.items()},
        "speedup": {n: to_json(r) for n, r in record.speedup.items()},
    }


def summary(result: dict[str, Any]) -> list[str]:
    record = ScaleoutResult.of(result)
    lines = [f"scale-out: {record.events} {record.size} photos, {record.backend}, pinned consumers"]
    for n, data in record.counts.items():
        shares = ", ".join(
            f"cpu{c.cpu[0] if c.cpu else '?'}:{int(c.results)}" for c in data.per_consumer
        )
        up = record.speedup.get(n, Range(None, None, None, 0))
        lines.append(
            f"  {n} consumer(s): drain {fmt(data.drain_s)} s, {fmt(data.throughput_per_s, 1)}"
            f"/s, x{fmt(up.median)} [{fmt(up.min)}-{fmt(up.max)}] of one, "
            f"{fmt(data.cpu_ms_per_image, 1)} CPU-ms/image, consumers used "
            f"{fmt(scaled(data.consumers_busy, 100), 0)}% of the machine (all: "
            f"{fmt(scaled(data.machine_busy, 100), 0)}%)  (results: {shares})"
        )
    return lines
