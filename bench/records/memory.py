"""The memory family: written by the memory scenario, read by its summary, the report, the
memory plot and the targets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.records.base import Figure, from_json


@dataclass(frozen=True)
class MemoryVariant:
    """One consumer kept saturated: its resident memory (MiB) before and under load, and what
    explains the level."""

    backend: str
    env: dict[str, str]
    idle_rss_mib: Figure
    peak_rss_mib: Figure
    hwm_mib: Figure
    # RSS after the warm-up: first and last sample, range, least-squares trend, and the mean of
    # the last third minus that of the first (what the "flat" target checks).
    settled_first_mib: Figure
    settled_last_mib: Figure
    settled_min_mib: Figure
    settled_max_mib: Figure
    growth_mib_per_min: Figure
    settled_growth_mib: Figure
    # Stage -> images in it on average over the load (Little's law on the stage histograms).
    images_in_stage: dict[str, Figure]
    photo_mean_mib: float
    waiting_bytes_mib: Figure  # compressed photos fetched and not yet decoded
    in_flight: list[tuple[float, Figure]]  # (t, the records-in-flight gauge)
    model_bytes: int
    classified: int
    classified_per_s: Figure
    load_s: tuple[float, float]  # when the load started and ended, on the samples' clock
    samples: list[tuple[float, float, float]]  # (t, VmRSS MiB, VmHWM MiB)

    @property
    def load_seconds(self) -> float:
        return self.load_s[1] - self.load_s[0]

    @property
    def undecoded(self) -> float:
        """Photos fetched and not yet decoded, on average (see `undecoded`)."""
        return undecoded(self.images_in_stage)


def undecoded(occupancy: Mapping[str, Figure]) -> float:
    """Photos downloaded and not yet decoded, on average: waiting for a decode thread or in it."""
    return (occupancy.get("decode_wait") or 0.0) + (occupancy.get("decode") or 0.0)


@dataclass(frozen=True)
class MemoryResult:
    """A memory result: variant name -> its figures, and the warm-up share of the load."""

    warmup_fraction: float
    variants: dict[str, MemoryVariant]

    @classmethod
    def of(cls, result: dict[str, Any]) -> MemoryResult:
        """The record of a memory result, as saved in its JSON file."""
        warmup = result.get("config", {}).get("warmup_fraction", 0.3)
        return from_json(cls, {"warmup_fraction": warmup, "variants": result["backends"]})
