"""The cold family: written by limits and cold, read by the targets, the report and the cold
plot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bench.records.base import Range, from_json


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
