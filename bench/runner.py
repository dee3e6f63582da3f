"""Running scenarios: inputs, the loopback internet, the broker, JSON, plots and the summary."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import structlog

from bench import plots, targets
from bench.common import BenchContext, Site, load_json, machine, save_json, site_mounts
from bench.inputs import Models, PhotoSet, ensure_models, ensure_photos
from bench.netsim import LinkProfile, NetSimProcess
from bench.procs import load_average
from bench.records import Link, RunInfo, to_json
from bench.scenario import Scenario
from bench.scenarios import cold, knobs, limits, memory, scaleout, stream
from consumer.testing.broker import kafka_broker

# In this order, so that cold's summary can refer to the critical path measured by limits.
ORDER: tuple[Scenario, ...] = (limits, cold, stream, knobs, scaleout, memory)
SCENARIOS: dict[str, Scenario] = {s.NAME: s for s in ORDER}
NEEDS_KAFKA = frozenset(s.NAME for s in ORDER if s.NEEDS_KAFKA)


def quiet_logs() -> None:
    """Only warnings from the service code this driver calls in-process (limits)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def quick_configs() -> dict[str, Any]:
    """Short versions of every scenario, for a smoke run while developing."""
    return {
        "limits": limits.Config(seconds=0.6, repeats=1),
        "cold": cold.Config(runs=1),
        "stream": stream.Config(loads=(0.5,), phase_seconds=3, burst_seconds=3, warmup_events=20),
        "knobs": knobs.Config(rounds=1, burst_events=100, phase_seconds=2),
        "scaleout": scaleout.Config(consumers=(1, 2), events=120, rounds=1),
        "memory": memory.Config(seconds=8),
    }


def with_params(configs: dict[str, Any], params: Sequence[str]) -> dict[str, Any]:
    """Override config fields: `SCENARIO.FIELD=VALUE`, e.g. `memory.seconds=120` or
    `scaleout.consumers=1,2` (a tuple of numbers) or `memory.variants=litert-1cpu` (some of the
    named defaults). The value takes the type of the default."""
    out = dict(configs)
    for param in params:
        target, sep, text = param.partition("=")
        name, dot, field_name = target.partition(".")
        if not sep or not dot or name not in SCENARIOS:
            raise ValueError(f"expected SCENARIO.FIELD=VALUE, got {param!r}")
        config = out.get(name) or SCENARIOS[name].Config()
        current = getattr(config, field_name)
        value: Any
        if isinstance(current, bool):
            value = text.lower() in ("1", "true", "yes")
        elif isinstance(current, int | float | str):
            value = type(current)(text)
        elif isinstance(current, tuple) and all(isinstance(v, int | float) for v in current):
            kind = type(current[0]) if current else float
            value = tuple(kind(v) for v in text.split(",") if v)
        elif isinstance(current, tuple) and all(hasattr(v, "name") for v in current):
            # A subset of the named defaults, e.g. `memory.variants=litert-1cpu`.
            by_name = {v.name: v for v in current}
            chosen = [v for v in text.split(",") if v]
            unknown = [v for v in chosen if v not in by_name]
            if unknown or not chosen:
                raise ValueError(f"{target}: choose from {sorted(by_name)}, got {text!r}")
            value = tuple(by_name[v] for v in chosen)
        else:
            raise ValueError(f"{target} cannot be set from the command line")
        out[name] = dataclasses.replace(config, **{field_name: value})
    return out


def make_plots(name: str, result: dict[str, Any], out_dir: Path) -> list[Path]:
    makers = {
        "cold": lambda: [
            plots.plot_cold(result, out_dir / "cold.png", load_json(out_dir, "limits"))
        ],
        "limits": lambda: [plots.plot_limits(result, out_dir / "limits.png")],
        "stream": lambda: [
            plots.plot_stream(result, out_dir / "stream.png"),
            plots.plot_stages(result, out_dir / "stream_stages.png"),
        ],
        "knobs": lambda: [plots.plot_knobs(result, out_dir / "knobs.png")],
        "scaleout": lambda: [plots.plot_scaleout(result, out_dir / "scaleout.png")],
        "memory": lambda: [plots.plot_memory(result, out_dir / "memory.png")],
    }
    return makers[name]() if name in makers else []


async def run_scenario(name: str, ctx: BenchContext, config: Any = None) -> dict[str, Any]:
    """Run one scenario, then write `<name>.json` and its plots into `ctx.out_dir`."""
    module = SCENARIOS[name]
    before = load_average()
    start = time.perf_counter()
    result: dict[str, Any] = await module.run(ctx, config)
    info = RunInfo(
        scenario=name,
        duration_s=time.perf_counter() - start,
        load_average_before=before,
        machine=machine(),  # its load average is the one after the run
        link=Link(ctx.site.profile.latency_s, ctx.site.profile.bandwidth_bps),
    )
    result.update(to_json(info))
    save_json(ctx.out_dir, name, result)
    result["plots"] = [str(p) for p in make_plots(name, result, ctx.out_dir)]
    save_json(ctx.out_dir, name, result)
    return result


@contextlib.contextmanager
def served_site(
    models: Models, photos: PhotoSet, profile: LinkProfile
) -> Iterator[tuple[Site, NetSimProcess]]:
    """The loopback internet in a child process, serving the models and photos."""
    with NetSimProcess(site_mounts(models, photos), profile) as net:
        yield Site(net.base, models, photos, profile), net


def summarize(out_dir: Path, names: Sequence[str]) -> list[str]:
    """The summary table of the named scenarios plus the target checks over all results."""
    lines: list[str] = []
    results: dict[str, dict[str, Any]] = {}
    for name, module in SCENARIOS.items():
        data = load_json(out_dir, name)
        if data is None:
            continue
        results[name] = data
        if name in names:
            lines += module.summary(data)
            info = RunInfo.of(data)
            before, after = info.load_average_before, info.machine.load_average
            lines.append(f"  (load average before {before}, after {after})")
    checks = targets.all_checks(results)
    save_json(out_dir, "targets", {"checks": targets.as_json(checks)})
    return lines + targets.table(checks)


async def run_all(
    names: Sequence[str],
    out_dir: Path,
    profile: LinkProfile,
    bootstrap: str | None = None,
    configs: dict[str, Any] | None = None,
    models: Models | None = None,
    photos: PhotoSet | None = None,
) -> list[str]:
    """Run `names` in the canonical order; returns the summary lines."""
    configs = configs or {}
    quiet_logs()
    photos = photos or ensure_photos()
    models = models or ensure_models()
    ordered = [n for n in SCENARIOS if n in names]
    with served_site(models, photos, profile) as (site, net):
        ctx = BenchContext(out_dir, site, None, net.pid)
        with contextlib.ExitStack() as stack:
            if NEEDS_KAFKA & set(ordered):
                ctx.bootstrap = stack.enter_context(
                    kafka_broker(
                        bootstrap or os.environ.get("BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS", "")
                    )
                )
            for name in ordered:
                print(f"== {name} ...", flush=True)
                await run_scenario(name, ctx, configs.get(name))
    return summarize(out_dir, ordered)
