"""The issue's targets, checked against whatever scenario results are present."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import fmt
from bench.records import (
    MemoryResult,
    ScaleoutResult,
    cold_ratios,
    limits_critical_paths,
    stream_variants,
)

COLD_RATIO = {"tensorflow": 3.0, "litert": 15.0}
COLD_CRITICAL_PATH = 1.25
STREAM_CEILING = 0.90
SCALE_TWO = 1.8
MEMORY_HEADROOM_MIB = 300.0
# "Flat": after warm-up, the mean RSS of the last third of the window exceeds that of the first
# third by at most this many MiB, or this fraction of the RSS, whichever is larger.
FLAT_MIB = 10.0
FLAT_FRACTION = 0.02


@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    wanted: str
    met: bool | None


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _met(ok: bool, *values: float) -> bool | None:
    return None if any(math.isnan(v) for v in values) else ok


def cold_checks(cold: dict[str, Any], limits: dict[str, Any] | None) -> list[Check]:
    checks = []
    limits_paths = limits_critical_paths(limits)
    for backend, entry in cold_ratios(cold).items():
        if entry.vs_original is not None and backend in COLD_RATIO:
            r = _num(entry.vs_original.median)
            checks.append(
                Check(
                    f"cold {backend}: speed-up vs naive baseline",
                    f"{fmt(r, 1)}x",
                    f">= {COLD_RATIO[backend]:g}x",
                    _met(r >= COLD_RATIO[backend], r),
                )
            )
        wall = _num(cold["variants"][f"birdwatch-{backend}"]["wall_s"]["median"])
        total = entry.path_total()
        if entry.vs_critical_path is not None and total is not None:
            # Measured in the same rounds as the cold runs: the fair comparison.
            r = _num(entry.vs_critical_path.median)
            path = _num(total.median)
            checks.append(
                Check(
                    f"cold {backend}: wall / critical path",
                    f"{fmt(r)} (paired; medians {fmt(wall)} s / {fmt(path)} s)",
                    f"<= {COLD_CRITICAL_PATH}",
                    _met(r <= COLD_CRITICAL_PATH, r),
                )
            )
        elif backend in limits_paths:
            path = limits_paths[backend].total_s
            r = wall / path if path else math.nan
            checks.append(
                Check(
                    f"cold {backend}: wall / critical path (limits run)",
                    f"{fmt(r)} ({fmt(wall)} s / {fmt(path)} s)",
                    f"<= {COLD_CRITICAL_PATH}",
                    _met(r <= COLD_CRITICAL_PATH, r),
                )
            )
    probe = cold.get("litert_imports_tensorflow")
    if probe is not None:
        checks.append(
            Check("cold litert: TensorFlow not imported", str(not probe), "True", not probe)
        )
    return checks


def stream_checks(stream: dict[str, Any], limits: dict[str, Any] | None) -> list[Check]:
    checks = []
    cores = str(
        max((int(c) for c in (limits or {}).get("config", {}).get("threads", [2])), default=2)
    )
    base = {n: v for n, v in stream_variants(stream).items() if not v.env}
    for backend, variant in base.items():
        for size, data in variant.sizes():
            capacity = _num(data.capacity.sustained_per_s)
            if data.ceiling is not None:
                # Measured right before and after the capacity burst: the fair comparison.
                r = _num(data.capacity_vs_ceiling)
                shared = _num(data.capacity_vs_shared_ceiling)
                checks.append(
                    Check(
                        f"stream {backend} {size}: capacity / ceiling",
                        f"{fmt(r * 100, 0)}% ({fmt(capacity, 1)} of "
                        f"{fmt(_num(data.ceiling.min), 1)}/s; {fmt(shared * 100, 0)}% of "
                        f"the shared-core ceiling {fmt(_num(data.ceiling.shared), 1)}/s)",
                        f">= {STREAM_CEILING:.0%}",
                        _met(r >= STREAM_CEILING, r),
                    )
                )
            elif limits and backend in limits.get("ceiling", {}):
                ceiling = limits["ceiling"][backend][size].get(cores, {})
                top = _num(ceiling.get("min"))
                shared = _num(ceiling.get("shared"))
                r = capacity / top if top else math.nan
                checks.append(
                    Check(
                        f"stream {backend} {size}: capacity / ceiling",
                        f"{fmt(r * 100, 0)}% ({fmt(capacity, 1)} of {fmt(top, 1)}/s; "
                        f"{fmt(capacity / shared * 100 if shared else math.nan, 0)}% of the "
                        f"shared-core ceiling {fmt(shared, 1)}/s)",
                        f">= {STREAM_CEILING:.0%}",
                        _met(r >= STREAM_CEILING, r),
                    )
                )
            half = data.loads.get("50")
            if half:
                p99, bound = _num(half.latency_s.p99), _num(half.p99_bound_s)
                checks.append(
                    Check(
                        f"stream {backend} {size}: p99 at 50% load",
                        f"{fmt(p99 * 1000, 0)} ms",
                        f"< {fmt(bound * 1000, 0)} ms",
                        _met(p99 < bound, p99, bound),
                    )
                )
    return checks


def scaleout_checks(scaleout: dict[str, Any]) -> list[Check]:
    two_range = ScaleoutResult.of(scaleout).speedup.get("2")
    two = _num(two_range.median if two_range else None)
    if math.isnan(two):
        return []
    return [
        Check(
            "scale-out: 2 pinned consumers vs 1",
            f"{fmt(two)}x",
            f">= {SCALE_TWO}x",
            _met(two >= SCALE_TWO, two),
        )
    ]


def flat_limit_mib(rss_mib: float) -> float:
    return max(FLAT_MIB, FLAT_FRACTION * rss_mib)


def is_flat(growth_mib: float, rss_mib: float) -> bool:
    return growth_mib <= flat_limit_mib(rss_mib)


def memory_checks(memory: dict[str, Any]) -> list[Check]:
    from bench.scenarios.memory import settled_growth_mib

    record = MemoryResult.of(memory)
    checks = []
    for backend, m in record.variants.items():
        growth = settled_growth_mib(m.samples, m.load_s, record.warmup_fraction)
        rss = _num(m.settled_max_mib)
        checks.append(
            Check(
                f"memory {backend}: flat after warm-up",
                f"{fmt(growth, 1)} MiB (last vs first third of {fmt(m.load_seconds, 0)} s of "
                f"load; slope {fmt(_num(m.growth_mib_per_min), 1)} MiB/min)",
                f"<= {fmt(flat_limit_mib(rss), 1)} MiB",
                _met(is_flat(growth, rss), growth, rss),
            )
        )
        peak = _num(m.peak_rss_mib)
        budget = m.model_bytes / 2**20 + MEMORY_HEADROOM_MIB
        checks.append(
            Check(
                f"memory {backend}: peak RSS",
                f"{fmt(peak, 0)} MiB",
                f"<= {fmt(budget, 0)} MiB (model + {MEMORY_HEADROOM_MIB:g})",
                _met(peak <= budget, peak),
            )
        )
    return checks


def all_checks(results: dict[str, dict[str, Any]]) -> list[Check]:
    limits = results.get("limits")
    checks: list[Check] = []
    if "cold" in results:
        checks += cold_checks(results["cold"], limits)
    if "stream" in results:
        checks += stream_checks(results["stream"], limits)
    if "scaleout" in results:
        checks += scaleout_checks(results["scaleout"])
    if "memory" in results:
        checks += memory_checks(results["memory"])
    return checks


def as_json(checks: list[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]


def table(checks: list[Check]) -> list[str]:
    lines = ["targets:"]
    for c in checks:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[c.met]
        lines.append(f"  {verdict:<6} {c.target:<45} {c.measured}  (target {c.wanted})")
    return lines
