"""*stream*: one warm `birdwatch serve` against the real broker, per backend and photo size.

Capacity is the sustained rate of a saturating burst (completions after the first tenth, so the
pipeline's fill-up is left out). Then events are published at a steady 25, 50, 75 and 100% of
that rate for a few seconds each; every phase waits for all of its results before the next.
End-to-end latency is the result record's timestamp (set when the service produces it) minus
the moment the event was handed to the producer, both on this machine's clock. The service's
own `birdwatch_stage_seconds` histograms are scraped before and after each phase, so the
difference shows where the time of that phase went. CPU seconds of the consumer, the loopback
internet, the broker and this driver are read from /proc around each phase, since all of them
share this machine's cores.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.common import SIZES, Backend, BenchContext, Site, Size, fmt
from bench.kafka import (
    Publisher,
    ResultReader,
    broker_pid,
    delete_topics,
    service_env,
)
from bench.measure import mean_ceiling, measure_ceiling
from bench.phases import BATCH_DELAY_S, measured_phase
from bench.procs import CpuMeter
from bench.records import (
    Ceiling,
    Phase,
    SizeFigures,
    StreamVariant,
    scaled,
    stream_variants,
    to_json,
)
from consumer.testing.serve import ServeProcess
from consumer.testing.topics import Topics, create_topics

NAME = "stream"
NEEDS_KAFKA = True


@dataclass(frozen=True)
class Variant:
    """One way to run the service: a backend, extra environment, which photos and loads."""

    name: str
    backend: Backend
    env: dict[str, str] = field(default_factory=dict)
    sizes: tuple[Size, ...] = SIZES
    loads: tuple[float, ...] | None = None  # None: the config's loads
    # Offer the loads as fractions of this other variant's capacity (same size), so a knob is
    # compared with the default at the same offered rate.
    reference: str | None = None


DEFAULT_VARIANTS: tuple[Variant, ...] = (
    Variant("litert", "litert"),
    Variant("tensorflow", "tensorflow"),
)
# Settings other than the defaults are compared side by side in the *knobs* scenario.


@dataclass(frozen=True)
class Config:
    variants: tuple[Variant, ...] = DEFAULT_VARIANTS
    loads: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    warmup_events: int = 60
    burst_seconds: float = 4.0
    phase_seconds: float = 4.0
    min_events: int = 20
    max_events: int = 1500
    partitions: int = 6
    timeout_s: float = 120.0
    # Measure the ceiling (decode and inference alone) right before and after each capacity
    # burst, so capacity / ceiling is a ratio taken side by side on this shared machine.
    ceiling_seconds: float = 0.6  # 0: skip


def _clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


async def run_variant(
    ctx: BenchContext, variant: Variant, config: Config, done: dict[str, StreamVariant]
) -> StreamVariant:
    assert ctx.bootstrap is not None
    site = ctx.site
    topics = Topics.unique(f"bench-stream-{variant.backend}")
    await create_topics(ctx.bootstrap, topics.names, config.partitions)
    out = StreamVariant(variant.backend, dict(variant.env))
    with tempfile.TemporaryDirectory(prefix="bench-stream-cache-") as cache:
        env = {
            **service_env(ctx, variant.backend, topics, cache, shutdown_timeout_s=10),
            **variant.env,
        }
        serve = ServeProcess(env, ctx.out_dir / "logs" / NAME / f"serve-{variant.name}.log")
        try:
            out = replace(out, ready_s=await serve.wait_ready())
            cpu = CpuMeter(
                {"consumer": serve.pid, "netsim": ctx.netsim_pid, "broker": broker_pid()}
            )
            async with (
                ResultReader(ctx.bootstrap, topics.results) as reader,
                Publisher(ctx.bootstrap, topics.input) as pub,
            ):
                for size in variant.sizes:
                    loads = variant.loads if variant.loads is not None else config.loads
                    ref = done.get(variant.reference or "")
                    ref_size = getattr(ref, size) if ref is not None else None
                    reference = ref_size.capacity.sustained_per_s if ref_size else None
                    figures, ceilings = await _run_size(
                        serve, reader, pub, cpu, site, variant, size, loads, config, reference
                    )
                    if ceilings:
                        ceiling = mean_ceiling(*ceilings)
                        capacity = scaled(figures.capacity.sustained_per_s, 1)
                        figures = replace(
                            figures,
                            ceiling=ceiling,
                            capacity_vs_ceiling=capacity / scaled(ceiling.min, 1),
                            capacity_vs_shared_ceiling=capacity / scaled(ceiling.shared, 1),
                        )
                    if size == "large":
                        out = replace(out, large=figures)
                    else:
                        out = replace(out, small=figures)
        finally:
            await serve.stop()
            await delete_topics(ctx.bootstrap, topics)
    return out


async def _run_size(
    serve: ServeProcess,
    reader: ResultReader,
    pub: Publisher,
    cpu: CpuMeter,
    site: Site,
    variant: Variant,
    size: Size,
    loads: tuple[float, ...],
    config: Config,
    reference_capacity: float | None = None,
) -> tuple[SizeFigures, list[Ceiling]]:
    urls = site.photo_urls(size)
    # Warm-up: also a rough rate (from the first send, so an underestimate) to size the burst.
    warm = await pub.burst(urls, config.warmup_events, f"{size}-warm")
    await reader.wait_for(warm, config.timeout_s)
    first = min(pub.sent.at[i] for i in warm)
    last = max(reader.results[i].produced_ms / 1000 for i in warm)
    rough = len(warm) / max(1e-3, last - first)
    count = _clamp(rough * config.burst_seconds, config.min_events, config.max_events)

    async def burst() -> list[str]:
        return await pub.burst(urls, count, f"{size}-capacity")

    ceilings = []
    if config.ceiling_seconds > 0:
        ceilings.append(
            await measure_ceiling(site, variant.backend, variant.env, size, config.ceiling_seconds)
        )
    capacity = await measured_phase(serve, reader, pub, cpu, burst, config.timeout_s)
    if config.ceiling_seconds > 0:
        ceilings.append(
            await measure_ceiling(site, variant.backend, variant.env, size, config.ceiling_seconds)
        )
    rate_100 = reference_capacity or scaled(capacity.sustained_per_s, 1)
    phases: dict[str, Phase] = {}
    for load in loads:
        rate = load * rate_100
        n = _clamp(rate * config.phase_seconds, config.min_events, config.max_events)

        async def steady(rate: float = rate, n: int = n, load: float = load) -> list[str]:
            return await pub.steady(urls, rate, n, f"{size}-load{int(load * 100)}")

        phase = await measured_phase(
            serve, reader, pub, cpu, steady, config.timeout_s + config.phase_seconds * 4
        )
        phases[str(int(load * 100))] = replace(phase, offered_per_s=rate)
    return SizeFigures(capacity=capacity, loads=phases), ceilings


async def run(ctx: BenchContext, config: Config | None = None) -> dict[str, Any]:
    config = config or Config()
    if ctx.bootstrap is None:
        raise RuntimeError("the stream scenario needs a Kafka broker")
    result: dict[str, Any] = {"config": asdict(config), "batch_delay_s": BATCH_DELAY_S}
    done: dict[str, StreamVariant] = {}
    for variant in config.variants:
        done[variant.name] = await run_variant(ctx, variant, config, done)
    result["variants"] = {name: to_json(v) for name, v in done.items()}
    return result


def base_variants(result: dict[str, Any]) -> dict[str, StreamVariant]:
    """The variants that run the service as configured by default, by backend name."""
    return {n: v for n, v in stream_variants(result).items() if not v.env and n == v.backend}


def summary(result: dict[str, Any]) -> list[str]:
    lines = ["stream: capacity (images/s) and end-to-end latency p50/p95/p99 (ms) by load"]
    for name, variant in stream_variants(result).items():
        for size, data in variant.sizes():
            cap = data.capacity
            lines.append(
                f"  {name:<18} {size:<5} capacity {fmt(cap.sustained_per_s, 1)}/s, consumer "
                f"{fmt(cap.consumer_cpu_ms_per_image, 1)} CPU-ms/image (busy: ours "
                f"{fmt(scaled(cap.cpu.get('ours_busy'), 100), 0)}%, machine "
                f"{fmt(scaled(cap.cpu.get('machine_busy'), 100), 0)}%)"
            )
            if data.ceiling is not None:
                c = data.ceiling
                lines.append(
                    f"    side-by-side ceiling: decode {fmt(c.decode, 0)}/s, inference "
                    f"{fmt(c.inference, 0)}/s -> min {fmt(c.min, 0)}/s "
                    f"(capacity {fmt(scaled(data.capacity_vs_ceiling, 100), 0)}%), shared "
                    f"{fmt(c.shared, 0)}/s "
                    f"({fmt(scaled(data.capacity_vs_shared_ceiling, 100), 0)}%)"
                )
            for load, phase in data.loads.items():
                lat = phase.latency_s
                lines.append(
                    f"    {load:>3}%: offered {fmt(phase.offered_per_s, 1)}/s achieved "
                    f"{fmt(phase.achieved_per_s, 1)}/s  p50 {fmt(scaled(lat.p50), 0)} "
                    f"p95 {fmt(scaled(lat.p95), 0)} p99 {fmt(scaled(lat.p99), 0)} "
                    f"(bound {fmt(scaled(phase.p99_bound_s), 0)})  batch "
                    f"{fmt(phase.mean_batch, 1)}"
                )
    return lines
