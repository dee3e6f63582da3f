"""What the pipeline tests build on: pipelines from the kit's fakes, with their results.

`Harness` runs on a `FakeClock` the test advances; `Bare` takes the config and decoder a test
gives, on the loop's clock. The fixtures that make them are in conftest.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from consumer.pipeline import Pipeline, WorkItem
from consumer.testing import CLASSES, FakeClassifier, FakeClock, FakeFetcher
from schemas import ImageEvent, PredictionResult


class Stages:
    """A StageObserver that counts the stages noted so far."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def stage(self, name: str, seconds: float) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def batch(self, size: int, seconds: float) -> None:
        return None


@dataclass
class Harness:
    pipeline: Pipeline
    results: list[tuple[WorkItem, PredictionResult]]
    classifier: FakeClassifier
    fetcher: FakeFetcher
    clock: FakeClock
    stages: Stages
    model_gate: asyncio.Event

    def by_id(self) -> dict[str, PredictionResult]:
        return {r.id: r for _, r in self.results}


@dataclass
class Bare:
    """A pipeline built from the parts a test gives, with its results as they arrive."""

    pipeline: Pipeline
    fetcher: FakeFetcher
    results: dict[str, PredictionResult] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)


def event(i: int, name: str | None = None) -> ImageEvent:
    return ImageEvent(id=f"e{i}", url=f"http://img.test/{name or f'cls{i % CLASSES}'}")
