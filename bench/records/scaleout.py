"""The scale-out family: written by the scaleout scenario, read by its summary, the report,
the scale-out plot and the targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.records.base import Figure, Range, from_json


@dataclass(frozen=True)
class ConsumerShare:
    """One pinned consumer of a run: its CPUs, the CPU seconds it used, the results it made."""

    cpu: list[int]
    cpu_s: float
    results: float


@dataclass(frozen=True)
class ScaleRun:
    """One burst drained by `consumers` consumers of one group."""

    consumers: int
    events: int
    ok: int
    drain_s: float
    throughput_per_s: float
    sustained_per_s: Figure
    group_settle_s: Figure
    per_consumer: list[ConsumerShare]
    cpu: dict[str, Figure]  # shares of the machine over the run (ours_busy, machine_busy...)


@dataclass(frozen=True)
class ScaleCount:
    """A consumer count over its rounds: medians (and ranges) of its runs."""

    throughput_per_s: Figure
    drain_s: Figure
    throughput: Range
    drain: Range
    sustained_per_s: Figure
    cpu_ms_per_image: Figure
    # How much of the machine the consumers got, and how busy it was in all.
    consumers_busy: Figure
    machine_busy: Figure
    per_consumer: list[ConsumerShare]  # of the last round
    runs: list[ScaleRun]


@dataclass(frozen=True)
class ScaleoutResult:
    """A scale-out result: consumer count ("1", "2"...) -> its figures, and its speed-up over
    one consumer (ratios within a round)."""

    events: int
    size: str
    backend: str
    cpus: int | None
    counts: dict[str, ScaleCount]
    speedup: dict[str, Range]

    @classmethod
    def of(cls, result: dict[str, Any]) -> ScaleoutResult:
        """The record of a scaleout result, as saved in its JSON file."""
        config = result["config"]
        return from_json(
            cls,
            {
                "events": config["events"],
                "size": config["size"],
                "backend": config["backend"],
                "cpus": result.get("cpus"),
                "counts": result["counts"],
                "speedup": result["speedup"],
            },
        )
