"""What every record builds on: the JSON round trip, ranges of runs, figures that may be
missing, and what the runner adds to every result (how and where it was measured)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import TypeAdapter

from bench.stats import Spread

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

    @classmethod
    def of(cls, spread: Spread) -> Range:
        return cls(spread.median, spread.low, spread.high, spread.n)


# A measured figure: one that could not be measured (NaN) is saved as null.
Figure = float | None


def scaled(value: Figure, factor: float = 1000.0) -> float:
    """`value * factor` for a table or a plot (seconds to ms by default); NaN when missing."""
    return float("nan") if value is None else value * factor


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
