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
