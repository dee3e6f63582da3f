"""*knobs*: a setting of the service against its default, side by side (A B A B).

Both services run at once, each on its own topics, and take turns: while one is measured the
other idles. Each round gives both a saturating burst of the same size (capacity), then the same
steady offered rate for a few seconds (latency), in alternating order. Ratios are taken within a
round, so a slow spell of this shared machine hits both alike.

Pairs measured by default, on small photos where inference dominates:
- TensorFlow with oneDNN off (TF_ENABLE_ONEDNN_OPTS=0), as the service ran before a fix: it
  used to set that variable to quiet TensorFlow's start-up notice;
- LiteRT with one inference thread vs the default of one per CPU (XNNPACK threads sharing two
  cores with the decode threads and the event loop);
- LiteRT with batches closing 10 ms after their first image instead of 50 ms (latency at low
  load against batching at high load).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import Backend, BenchContext, Size, fmt
from bench.kafka import (
    Publisher,
    ResultReader,
    broker_pid,
    delete_topics,
    service_env,
)
from bench.phases import measured_phase
from bench.procs import CpuMeter
from bench.records import Phase, scaled, to_json
from bench.stats import ratio, spread
from consumer.testing.serve import ServeProcess
from consumer.testing.topics import Topics, create_topics

NAME = "knobs"
NEEDS_KAFKA = True


@dataclass(frozen=True)
class Pair:
    name: str
    backend: Backend
    knob: dict[str, str]
    size: Size = "small"


DEFAULT_PAIRS = (
    Pair("tensorflow: oneDNN off", "tensorflow", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    Pair("litert: 1 inference thread", "litert", {"BIRDWATCH_INFERENCE_THREADS": "1"}),
    Pair("litert: 10 ms batch delay", "litert", {"BIRDWATCH_MAX_BATCH_DELAY_MS": "10"}),
)


@dataclass(frozen=True)
class Config:
    pairs: tuple[Pair, ...] = DEFAULT_PAIRS
    rounds: int = 2
    burst_events: int = 400
    load: float = 0.5  # of the default's median burst capacity
    phase_seconds: float = 4.0
    partitions: int = 6
    timeout_s: float = 120.0
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Side:
    serve: ServeProcess
    reader: ResultReader
    pub: Publisher
    cpu: CpuMeter


async def run_pair(ctx: BenchContext, pair: Pair, config: Config) -> dict[str, Any]:
    assert ctx.bootstrap is not None
    site = ctx.site
    urls = site.photo_urls(pair.size)
    envs = {"default": {}, "knob": pair.knob}
    topics = {k: Topics.unique(f"bench-knob-{k}") for k in envs}
    for t in topics.values():
        await create_topics(ctx.bootstrap, t.names, config.partitions)
    sides: dict[str, _Side] = {}
    results: dict[str, dict[str, list[Phase]]] = {k: {"capacity": [], "steady": []} for k in envs}
    async with contextlib.AsyncExitStack() as stack:
        cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-knobs-cache-"))
        try:
            for key, env in envs.items():
                serve = ServeProcess(
                    {
                        **service_env(ctx, pair.backend, topics[key], cache, shutdown_timeout_s=10),
                        **config.extra_env,
                        **env,
                    },
                    ctx.out_dir / "logs" / NAME / f"serve-{pair.backend}-{key}.log",
                )
                sides[key] = _Side(
                    serve,
                    await stack.enter_async_context(
                        ResultReader(ctx.bootstrap, topics[key].results)
                    ),
                    await stack.enter_async_context(Publisher(ctx.bootstrap, topics[key].input)),
                    CpuMeter(
                        {"consumer": serve.pid, "netsim": ctx.netsim_pid, "broker": broker_pid()}
                    ),
                )
            for side in sides.values():
                await side.serve.wait_ready()
            for key, side in sides.items():  # warm-up: first batches, connections
                ids = await side.pub.burst(urls, 40, f"{key}-warm")
                await side.reader.wait_for(ids, config.timeout_s)

            order = list(envs)
            for r in range(config.rounds):
                for key in order if r % 2 == 0 else order[::-1]:
                    side = sides[key]

                    async def burst(side: _Side = side, key: str = key, r: int = r) -> list[str]:
                        return await side.pub.burst(urls, config.burst_events, f"{key}-cap{r}")

                    results[key]["capacity"].append(
                        await measured_phase(
                            side.serve, side.reader, side.pub, side.cpu, burst, config.timeout_s
                        )
                    )
            rate = (
                config.load
                * spread(
                    scaled(c.sustained_per_s, 1) for c in results["default"]["capacity"]
                ).median
            )
            count = max(10, round(rate * config.phase_seconds))
            for r in range(config.rounds):
                for key in order if r % 2 == 0 else order[::-1]:
                    side = sides[key]

                    async def steady(side: _Side = side, key: str = key, r: int = r) -> list[str]:
                        return await side.pub.steady(urls, rate, count, f"{key}-steady{r}")

                    results[key]["steady"].append(
                        await measured_phase(
                            side.serve,
                            side.reader,
                            side.pub,
                            side.cpu,
                            steady,
                            config.timeout_s + config.phase_seconds * 4,
                        )
                    )
        finally:
            for side in sides.values():
                await side.serve.stop()
    # Only once the readers are closed: they would warn about the vanished topics.
    for t in topics.values():
        await delete_topics(ctx.bootstrap, t)

    def summary_of(key: str) -> dict[str, Any]:
        caps, steady = results[key]["capacity"], results[key]["steady"]
        return {
            "capacity_per_s": spread(scaled(c.sustained_per_s, 1) for c in caps).as_dict(),
            "cpu_ms_per_image": spread(
                scaled(c.consumer_cpu_ms_per_image, 1) for c in caps
            ).as_dict(),
            "p50_ms": spread(scaled(s.latency_s.p50) for s in steady).as_dict(),
            "p99_ms": spread(scaled(s.latency_s.p99) for s in steady).as_dict(),
            "mean_batch": spread(scaled(s.mean_batch, 1) for s in steady).median,
            "inference_ms_per_batch": spread(
                scaled(s.stage_mean("inference")) for s in steady
            ).median,
            "machine_busy": spread(
                scaled(c.cpu.get("machine_busy"), 1) for c in caps + steady
            ).median,
        }

    rounds = range(config.rounds)
    return {
        "backend": pair.backend,
        "knob": pair.knob,
        "size": pair.size,
        "offered_per_s": rate,
        "default": summary_of("default"),
        "knob_result": summary_of("knob"),
        "capacity_ratio": spread(
            ratio(
                scaled(results["knob"]["capacity"][i].sustained_per_s, 1),
                scaled(results["default"]["capacity"][i].sustained_per_s, 1),
            )
            for i in rounds
        ).as_dict(),
        "p99_ratio": spread(
            ratio(
                scaled(results["knob"]["steady"][i].latency_s.p99, 1),
                scaled(results["default"]["steady"][i].latency_s.p99, 1),
            )
            for i in rounds
        ).as_dict(),
        "raw": {
            key: {kind: [to_json(p) for p in phases] for kind, phases in per_kind.items()}
            for key, per_kind in results.items()
        },
    }


async def run(ctx: BenchContext, config: Config | None = None) -> dict[str, Any]:
    config = config or Config()
    if ctx.bootstrap is None:
        raise RuntimeError("the knobs scenario needs a Kafka broker")
    return {
        "config": asdict(config),
        "pairs": {p.name: await run_pair(ctx, p, config) for p in config.pairs},
    }


def summary(result: dict[str, Any]) -> list[str]:
    lines = ["knobs: a setting vs the default, interleaved (knob / default, median [range])"]
    for name, p in result["pairs"].items():
        d, k = p["default"], p["knob_result"]
        cr, pr = p["capacity_ratio"], p["p99_ratio"]
        lines.append(
            f"  {name:<28} capacity {fmt(k['capacity_per_s']['median'], 0)} vs "
            f"{fmt(d['capacity_per_s']['median'], 0)}/s = x{fmt(cr['median'])} "
            f"[{fmt(cr['min'])}-{fmt(cr['max'])}];  at {fmt(p['offered_per_s'], 0)}/s p99 "
            f"{fmt(k['p99_ms']['median'], 0)} vs {fmt(d['p99_ms']['median'], 0)} ms = "
            f"x{fmt(pr['median'])} [{fmt(pr['min'])}-{fmt(pr['max'])}]"
        )
    return lines
