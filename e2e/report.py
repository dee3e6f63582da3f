"""The figures a run prints: one short block per part, and the machine they were measured on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from e2e.records import LatencyStats


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"machine: {model}, {os.cpu_count()} CPUs"


def latency_of(stats: LatencyStats | None) -> str:
    return latency(stats.as_dict() if stats else None)


def latency(stats: dict[str, float] | None) -> str:
    if not stats:
        return "no results"
    p50, p99, top = (stats[k] / 1000 for k in ("p50_ms", "p99_ms", "max_ms"))
    return f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {top:.2f} s"


def _drains(drain: dict[str, Any], what: str) -> list[str]:
    lines = []
    for count in ("1", "2"):
        one = drain[count]
        cpu = one["cpu"]
        lines.append(
            f"  {count} {what}: {one['events']} photos in {one['seconds']:.1f} s "
            f"({one['per_second']:.1f}/s); consumers used {cpu['consumer_cores']:.2f} cores "
            f"({one['cpu_ms_per_photo']:.0f} CPU-ms/photo), the machine {cpu['machine_cores']:.2f} "
            f"of its CPUs (load average {one['load_average']:.1f})"
        )
    lines.append(f"  ratio 2 vs 1: {drain['ratio']:.2f}x")
    lines.append(
        f"  CPU-bound projection with a whole CPU per consumer: {projected_ratio(drain):.2f}x "
        "(2 x the CPU-ms per photo of one consumer / that of two)"
    )
    return lines


def projected_ratio(drain: dict[str, Any]) -> float:
    """What two consumers with a CPU each would do against one, if the work stays CPU-bound:
    the CPU per photo measured with one and with two (a machine shared with other work gives
    the consumers less than their limits, which the plain ratio then measures)."""
    return 2 * float(drain["1"]["cpu_ms_per_photo"]) / float(drain["2"]["cpu_ms_per_photo"])


def compose(found: dict[str, Any]) -> str:
    checked = found["correctness"]
    lines = [
        "e2e-compose: PASSED",
        f"  correctness: {checked['events']} events -> {checked['events']} ok results, "
        f"right species, 0 lost, 0 duplicates; partitions {checked['partitions']}",
        "  drain of a burst of large photos, one CPU per consumer:",
        *_drains(found["drain"], "consumer"),
    ]
    return "\n".join(lines)


def k8s(found: dict[str, Any]) -> str:
    lines = ["e2e-k8s: PASSED"]
    for guarantee, parts in found.items():
        lines.append(f" {guarantee}:")
        if "smoke" in parts:
            smoke = parts["smoke"]
            lines.append(
                f"  smoke: {smoke['events']} events, all ok with the right species; "
                f"{latency(smoke['latency'])}"
            )
        if "scaleout" in parts:
            lines.append("  scale-out, burst of large photos, CPU limit 1 per replica:")
            lines += _drains(parts["scaleout"], "replica(s)")
        if "keda" in parts:
            keda = parts["keda"]
            lines.append(
                f"  KEDA: {keda['events']} events, lag peak {keda['peak_lag']}; "
                f"replicas 1 -> {keda['max_replicas']} "
                f"(first step at {keda['scaled_up_at_s']:.0f} s) "
                f"-> 1 at {keda['back_to_min_at_s']:.0f} s; "
                f"lag 0 at {keda['drained_at_s']:.0f} s; plot {keda['plot']}"
            )
        for action in ("delete", "rollout"):
            chaos = parts.get(f"chaos_{action}")
            if chaos:
                lines.append(
                    f"  chaos, {action} during a stream: {chaos['events']} events, 0 lost, "
                    f"{chaos['duplicates']} duplicates; {latency(chaos['latency'])}"
                )
    return "\n".join(lines)


def handover(found: dict[str, Any]) -> str:
    lines = ["e2e-handover:"]
    for guarantee, run in found.items():
        lines.append(
            f" {guarantee}, {run['rate']:g} events/s: {run['events']} events, {run['lost']} lost, "
            f"{run['duplicates']} duplicates; overall {latency(run['overall'])}; "
            f"plot {run['plot']}"
        )
        if run.get("before_crash"):
            lines.append(f"  up to the first crash: {latency(run['before_crash'])}")
        lines.append(f"  {'steady':<11} (before the first): {latency(run['steady'])}")
        for step in run["disruptions"]:
            lines.append(
                f"  {step['name']:<11} (at {step['at_s']:.0f} s, whole again after "
                f"{step['whole_after_s']:.0f} s): {latency(step['latency'])}"
            )
    return "\n".join(lines)
