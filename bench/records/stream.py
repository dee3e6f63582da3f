"""The stream family: written by stream (and knobs, through the same phases), read by the
targets, the report and the stream plots. Measured figures are `Figure`s (`float | None`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.records.base import Figure, from_json


@dataclass(frozen=True)
class Latency:
    """End-to-end latency of one phase's events, seconds."""

    p50: Figure
    p95: Figure
    p99: Figure
    max: Figure


@dataclass(frozen=True)
class Phase:
    """One phase of events (a burst, or a steady rate) through one service."""

    events: int
    ok: int
    errors: int
    achieved_per_s: Figure
    sustained_per_s: Figure
    latency_s: Latency
    # Stage name -> the stage histogram's summary over the phase (count, mean, p50, p95; s).
    stages: dict[str, dict[str, Figure]]
    mean_batch: Figure
    # CPU shares over the phase (ours_busy, machine_busy, consumer_cpu_s, ...).
    cpu: dict[str, Figure]
    p99_bound_s: Figure
    consumer_cpu_ms_per_image: Figure
    offered_per_s: Figure = None  # steady phases only

    def stage_mean(self, stage: str) -> Figure:
        return self.stages.get(stage, {}).get("mean")


@dataclass(frozen=True)
class Ceiling:
    """Decode and inference throughput alone (images/s); with `before` and `after`, the mean
    of the two measured around a capacity burst."""

    decode: Figure
    inference: Figure
    min: Figure
    shared: Figure
    before: dict[str, Figure] | None = None
    after: dict[str, Figure] | None = None


@dataclass(frozen=True)
class SizeFigures:
    """A stream variant's figures for one photo size."""

    capacity: Phase
    loads: dict[str, Phase]  # "50" -> the phase at 50% of capacity
    ceiling: Ceiling | None = None
    capacity_vs_ceiling: Figure = None
    capacity_vs_shared_ceiling: Figure = None


@dataclass(frozen=True)
class StreamVariant:
    """One stream variant: a service configuration, measured for one or both photo sizes."""

    backend: str
    env: dict[str, str]
    ready_s: Figure = None
    large: SizeFigures | None = None
    small: SizeFigures | None = None

    def sizes(self) -> list[tuple[str, SizeFigures]]:
        """(size, figures) of the sizes measured, large photos first."""
        return [(s, f) for s, f in (("large", self.large), ("small", self.small)) if f]


def stream_variants(result: dict[str, Any]) -> dict[str, StreamVariant]:
    """The variants of a stream result, by name."""
    return from_json(dict[str, StreamVariant], result.get("variants", {}))
