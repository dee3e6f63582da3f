"""One measured phase of a stream of events through a running `birdwatch serve`: its
throughput, end-to-end latency, where the time went (the service's stage histograms, scraped
before and after) and the CPU each process used (used by the *stream* and *knobs* scenarios)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from bench.kafka import Publisher, ResultReader, histograms
from bench.procs import CpuMeter
from bench.records import Latency, Phase
from bench.stats import HistogramSnapshot, diff_histograms, percentile, sustained_rate
from consumer.testing.serve import ServeProcess

BATCH_DELAY_S = 0.050  # the service default BIRDWATCH_MAX_BATCH_DELAY_MS


def stage_summary(diff: dict[str, HistogramSnapshot]) -> dict[str, dict[str, float]]:
    return {stage: snap.summary() for stage, snap in sorted(diff.items()) if snap.count}


def phase_record(
    ids: list[str],
    sent: dict[str, float],
    reader: ResultReader,
    stages: dict[str, dict[str, float]],
    batch: HistogramSnapshot | None,
    cpu: dict[str, float],
) -> Phase:
    """Throughput, latency and stage figures of one phase."""
    results = [reader.results[i] for i in ids]
    done = [r.produced_ms / 1000 for r in results]
    latencies = [r.produced_ms / 1000 - sent[i] for i, r in zip(ids, results, strict=True)]
    first_sent = min(sent[i] for i in ids)
    span = max(done) - first_sent
    achieved = len(ids) / span if span > 0 else math.nan
    sustained = sustained_rate(done)
    # One batch's processing: an image's fetch and decode, then its batch's inference (means:
    # the histogram buckets are too coarse for medians).
    processing = sum(stages.get(s, {}).get("mean", 0.0) for s in ("fetch", "decode", "inference"))
    return Phase(
        events=len(ids),
        ok=sum(r.status == "ok" for r in results),
        errors=sum(r.status != "ok" for r in results),
        achieved_per_s=achieved,
        # Too few completions to leave out the fill-up (one batch): the rate from the first send.
        sustained_per_s=achieved if math.isnan(sustained) else sustained,
        latency_s=Latency(
            p50=percentile(latencies, 0.50),
            p95=percentile(latencies, 0.95),
            p99=percentile(latencies, 0.99),
            max=max(latencies),
        ),
        stages={k: dict(v) for k, v in stages.items()},
        mean_batch=batch.mean if batch is not None else float("nan"),
        cpu=dict(cpu),
        p99_bound_s=2 * (BATCH_DELAY_S + processing),
        consumer_cpu_ms_per_image=1000 * cpu.get("consumer_cpu_s", math.nan) / len(ids),
    )


async def measured_phase(
    serve: ServeProcess,
    reader: ResultReader,
    pub: Publisher,
    cpu: CpuMeter,
    send: Callable[[], Awaitable[list[str]]],
    timeout_s: float,
) -> Phase:
    """Run one phase (`send` publishes its events and returns their ids) and measure it: the
    service's stage histograms and the CPU of every process, before and after."""
    before = await histograms(serve)
    cpu.start()
    ids: list[str] = await send()
    await reader.wait_for(ids, timeout_s)
    used = cpu.stop()
    after = await histograms(serve)
    stages = stage_summary(diff_histograms(after["stage"], before["stage"]))
    batch = diff_histograms(after["batch"], before["batch"]).get("")
    return phase_record(ids, pub.sent.at, reader, stages, batch, used)
