"""*memory*: resident memory of one consumer under sustained load, per backend.

The consumer is kept saturated: large photos are published faster than it can classify them
for a fixed time, so its in-flight budget (BIRDWATCH_MAX_IN_FLIGHT) stays full and intake
pauses and resumes - the worst case for memory. VmRSS and VmHWM are sampled from
/proc/<pid>/status a few times a second, from readiness (idle, model loaded) to the end. Growth
is the least-squares slope of RSS after the warm-up (the first `warmup_fraction` of the load).

To explain the level, the service's in-flight gauge is sampled every second, and its stage
histograms at the start and the end of the load give, by Little's law, how many images were in
each stage on average (the seconds all images spent in it / the seconds of the load): downloaded
photos waiting for a decode thread hold their compressed bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import Backend, BenchContext, Size, fmt
from bench.kafka import (
    Publisher,
    ResultReader,
    delete_topics,
    histograms,
    service_env,
)
from bench.procs import memory_mib
from bench.records import MemoryResult, MemoryVariant, to_json
from bench.records.memory import undecoded
from bench.stats import STAGES, diff_histograms, slope_per_s
from consumer.testing.serve import ServeProcess
from consumer.testing.topics import Topics, create_topics

NAME = "memory"
NEEDS_KAFKA = True
# The service's stages (its stage histograms) whose mean occupancy is reported; only from fetch
# to decode does a record hold its photo's bytes (in fetch_wait it holds just its event).
OCCUPANCY_STAGES = tuple(s for s in STAGES if s != "inference")  # inference is per batch


@dataclass(frozen=True)
class Variant:
    name: str
    backend: Backend
    env: dict[str, str] = field(default_factory=dict)


DEFAULT_VARIANTS = (
    Variant("litert", "litert"),
    Variant("tensorflow", "tensorflow"),
    # A pod sized to one CPU (decode and inference threads default to the CPU count): decoding
    # is slower there, so more downloaded photos wait for it.
    Variant(
        "litert-1cpu",
        "litert",
        {"BIRDWATCH_DECODE_THREADS": "1", "BIRDWATCH_INFERENCE_THREADS": "1"},
    ),
)


@dataclass(frozen=True)
class Config:
    variants: tuple[Variant, ...] = DEFAULT_VARIANTS
    size: Size = "large"
    seconds: float = 40.0
    rate_per_s: float = 100.0  # well above what 2 cores classify of large photos
    warmup_fraction: float = 0.3
    sample_s: float = 0.25
    partitions: int = 6


class RssSampler:
    """Samples (t, VmRSS MiB, VmHWM MiB) of a process in the background."""

    def __init__(self, pid: int, every_s: float) -> None:
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float, float]] = []
        self._t0 = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            mem = memory_mib(self.pid)
            if mem is not None:
                self.samples.append((time.perf_counter() - self._t0, *mem))
            await asyncio.sleep(self.every_s)

    def now(self) -> float:
        return time.perf_counter() - self._t0

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def settled_growth_mib(
    samples: list[list[float]] | list[tuple[float, float, float]],
    load_s: list[float] | tuple[float, float],
    warmup_fraction: float,
) -> float:
    """Mean RSS of the last third of the settled window minus that of its first third (MiB):
    robust to the sawtooth of intake pausing and resuming, unlike a slope over a short window."""
    start, end = load_s
    settled_from = start + warmup_fraction * (end - start)
    points = [s[1] for s in samples if settled_from <= s[0] <= end]
    third = len(points) // 3
    if third < 1:
        return float("nan")
    return sum(points[-third:]) / third - sum(points[:third]) / third


def analyse(
    samples: list[tuple[float, float, float]], load_start: float, load_end: float, warmup: float
) -> dict[str, float]:
    """Idle RSS, peak, and the RSS trend after warm-up (MiB, MiB/min)."""
    idle = [rss for t, rss, _ in samples if t < load_start]
    loaded = [(t, rss) for t, rss, _ in samples if load_start <= t <= load_end]
    settled_from = load_start + warmup * (load_end - load_start)
    settled = [(t, rss) for t, rss in loaded if t >= settled_from]
    slope = slope_per_s(settled)
    return {
        "idle_rss_mib": idle[-1] if idle else float("nan"),
        "peak_rss_mib": max((rss for _, rss in loaded), default=float("nan")),
        "hwm_mib": max((h for _, _, h in samples), default=float("nan")),
        "settled_first_mib": settled[0][1] if settled else float("nan"),
        "settled_last_mib": settled[-1][1] if settled else float("nan"),
        "settled_min_mib": min((r for _, r in settled), default=float("nan")),
        "settled_max_mib": max((r for _, r in settled), default=float("nan")),
        "growth_mib_per_min": slope * 60,
        "settled_growth_mib": settled_growth_mib(samples, (load_start, load_end), warmup),
    }


async def sample_in_flight(
    serve: ServeProcess, sampler: RssSampler, out: list[tuple[float, float]]
) -> None:
    """(t, records in flight) once a second, on the RSS sampler's clock."""
    while True:
        with contextlib.suppress(Exception):
            _, text = await serve.get("/metrics")
            out.append((sampler.now(), gauge(text, "birdwatch_records_in_flight")))
        await asyncio.sleep(1.0)


def gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


async def run_variant(ctx: BenchContext, variant: Variant, config: Config) -> MemoryVariant:
    assert ctx.bootstrap is not None
    site = ctx.site
    backend = variant.backend
    topics = Topics.unique(f"bench-memory-{backend}")
    await create_topics(ctx.bootstrap, topics.names, config.partitions)
    with tempfile.TemporaryDirectory(prefix="bench-memory-cache-") as cache:
        env = {**service_env(ctx, backend, topics, cache, shutdown_timeout_s=5), **variant.env}
        serve = ServeProcess(env, ctx.out_dir / "logs" / NAME / f"serve-{variant.name}.log")
        sampler = RssSampler(serve.pid, config.sample_s)
        sampler.start()
        in_flight: list[tuple[float, float]] = []
        gauges: asyncio.Task[None] | None = None
        try:
            await serve.wait_ready()
            gauges = asyncio.create_task(sample_in_flight(serve, sampler, in_flight))
            await asyncio.sleep(1.0)  # a few idle samples
            before = (await histograms(serve))["stage"]
            count = max(1, round(config.rate_per_s * config.seconds))
            async with (
                ResultReader(ctx.bootstrap, topics.results) as reader,
                Publisher(ctx.bootstrap, topics.input) as pub,
            ):
                load_start = sampler.now()
                await pub.steady(site.photo_urls(config.size), config.rate_per_s, count, "m")
                load_end = sampler.now()
                classified = len(reader.results)
            after = (await histograms(serve))["stage"]
        finally:
            if gauges is not None:
                gauges.cancel()
            await sampler.stop()
            await serve.stop(timeout_s=15)
            await delete_topics(ctx.bootstrap, topics)
    analysis = analyse(sampler.samples, load_start, load_end, config.warmup_fraction)
    seconds = load_end - load_start
    occupancy = {
        stage: snap.total / seconds
        for stage, snap in diff_histograms(after, before).items()
        if stage in OCCUPANCY_STAGES
    }
    photos = site.photos.sizes(config.size)
    mean_bytes = sum(photos) / len(photos)
    return MemoryVariant(
        **analysis,
        backend=backend,
        env=dict(variant.env),
        images_in_stage=dict(occupancy),
        photo_mean_mib=mean_bytes / 2**20,
        # Photos fetched, not yet decoded: each holds its compressed bytes (the fetch stage
        # holds part of one while it streams in).
        waiting_bytes_mib=undecoded(occupancy) * mean_bytes / 2**20,
        in_flight=[(round(t, 2), v) for t, v in in_flight],
        model_bytes=site.model_file(backend).stat().st_size,
        classified=classified,
        classified_per_s=classified / (load_end - load_start),
        load_s=(load_start, load_end),
        samples=[(round(t, 3), round(r, 1), round(h, 1)) for t, r, h in sampler.samples],
    )


async def run(ctx: BenchContext, config: Config | None = None) -> dict[str, Any]:
    config = config or Config()
    if ctx.bootstrap is None:
        raise RuntimeError("the memory scenario needs a Kafka broker")
    variants = {v.name: await run_variant(ctx, v, config) for v in config.variants}
    return {
        "config": asdict(config),
        "backends": {name: to_json(v) for name, v in variants.items()},
    }


def summary(result: dict[str, Any]) -> list[str]:
    lines = ["memory: RSS of one saturated consumer (MiB)"]
    for backend, m in MemoryResult.of(result).variants.items():
        lines.append(
            f"  {backend:<12} idle {fmt(m.idle_rss_mib, 0)}  peak {fmt(m.peak_rss_mib, 0)}"
            f"  after warm-up {fmt(m.settled_min_mib, 0)}-{fmt(m.settled_max_mib, 0)}"
            f"  trend {fmt(m.growth_mib_per_min, 1)} MiB/min  model "
            f"{fmt(m.model_bytes / 2**20, 1)} MiB  ({fmt(m.classified_per_s, 1)} images/s)"
        )
        stages = m.images_in_stage
        lines.append(
            f"    images on average waiting to download {fmt(stages.get('fetch_wait'), 1)}, "
            f"downloading {fmt(stages.get('fetch'), 1)}, downloaded and not yet decoded "
            f"{fmt(m.undecoded, 1)} (~{fmt(m.waiting_bytes_mib, 0)} MiB of "
            f"compressed photos), decoded and queued {fmt(stages.get('queue'), 1)}"
        )
    return lines
