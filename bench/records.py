"""Typed records the scenarios write and the runner, report, plots and targets read back.

A scenario's JSON file is the record's `to_json()`; readers rebuild the record with
`from_json` (pydantic validates the nested dataclasses), so a misspelt key is a type error or
a validation error, not a silent KeyError far away.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter

R = TypeVar("R")


def from_json(kind: type[R], data: Any) -> R:
    """A record of type `kind` from its JSON form (as loaded from a result file)."""
    return TypeAdapter(kind).validate_python(data)


def to_json(record: Any) -> dict[str, Any]:
    """The JSON form of a record (a dataclass)."""
    data: dict[str, Any] = dataclasses.asdict(record)
    return data


@dataclass(frozen=True)
class Range:
    """Several runs of one figure: their median and range (`stats.Spread` in JSON form)."""

    median: float | None
    min: float | None
    max: float | None
    n: int


@dataclass(frozen=True)
class CriticalPath:
    """The shortest a cold run can take: start-up, then the model path and the image path side
    by side, then one inference (seconds). Written by limits and cold; read by the targets, the
    report and the cold plot."""

    startup_s: float
    model_path_s: float
    image_path_s: float
    inference_s: float
    total_s: float
    bound_by: Literal["model", "images"]

    PARTS = ("startup_s", "model_path_s", "image_path_s", "inference_s", "total_s")

    def part(self, name: str) -> float:
        if name not in self.PARTS:
            raise KeyError(name)
        value: float = getattr(self, name)
        return value


@dataclass(frozen=True)
class ColdRatios:
    """One backend's speed-ups in the cold scenario (each over the paired rounds), and its
    critical path measured in the same rounds: part name -> range. Read by the targets, the
    report and the cold plot."""

    vs_original: Range | None = None
    vs_same_backend: Range | None = None
    vs_critical_path: Range | None = None
    critical_path: dict[str, Range] | None = None

    def path_total(self) -> Range | None:
        return None if self.critical_path is None else self.critical_path["total_s"]


def cold_ratios(result: dict[str, Any]) -> dict[str, ColdRatios]:
    """Per backend, the ratios of a cold result."""
    return from_json(dict[str, ColdRatios], result.get("ratios", {}))


def limits_critical_paths(limits: dict[str, Any] | None) -> dict[str, CriticalPath]:
    """Per backend, the critical path a limits result derived (none without a result)."""
    if limits is None:
        return {}
    return from_json(dict[str, CriticalPath], limits.get("critical_path", {}))


@dataclass(frozen=True)
class Link:
    """The simulated network between the service and the loopback internet."""

    latency_s: float
    bandwidth_bps: float


@dataclass(frozen=True)
class Machine:
    """The machine and the versions a result was measured with."""

    cpus: int | None
    cpu_model: str
    memory_gib: float
    kernel: str
    python: str
    load_average: tuple[float, float, float]
    versions: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    """What the runner adds to every scenario's result: how and where it was measured."""

    scenario: str
    duration_s: float
    load_average_before: tuple[float, float, float]
    machine: Machine
    link: Link
    plots: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, result: dict[str, Any]) -> RunInfo:
        """The run information of a scenario's result, as saved in its JSON file."""
        keys = {f.name for f in dataclasses.fields(cls)}
        return from_json(cls, {k: v for k, v in result.items() if k in keys})


# --- the stream family: written by stream (and knobs, through the same phases), read by the
# targets, the report and the stream plots. Measured figures are `float | None`: a figure that
# could not be measured (NaN) is saved as null.

Figure = float | None


def scaled(value: Figure, factor: float = 1000.0) -> float:
    """`value * factor` for a table or a plot (seconds to ms by default); NaN when missing."""
    return float("nan") if value is None else value * factor


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
