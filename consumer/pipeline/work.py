"""What the pipeline, its collaborators and its transports exchange: the work item, the
settings, and the interfaces of the fetcher, the decoder, the model, the sink and the observer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from opentelemetry.trace import Span

from consumer import tracing
from consumer.model import LoadedModel
from schemas import ImageEvent, PredictionResult


class Fetcher(Protocol):
    async def fetch(self, url: str) -> bytes: ...


class OpenedImage(Protocol):
    """An image whose header is read: what decoding it will cost, and the decode itself."""

    @property
    def cost_bytes(self) -> int: ...

    def decode(self) -> NDArray[np.uint8]: ...


class Decoder(Protocol):
    def open(self, data: bytes) -> OpenedImage: ...


ModelSource = Callable[[], Awaitable[LoadedModel]]


@dataclass(slots=True)
class WorkItem:
    """One event on its way through; `tag` is the transport's bookkeeping (e.g. an offset)."""

    event: ImageEvent
    tag: Any = None
    submitted: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The transport's span for this item (consumer/tracing.py): each stage becomes a child.
    span: Span | None = None


Sink = Callable[[WorkItem, PredictionResult], Awaitable[None]]


class StageObserver(Protocol):
    """Receives stage durations, e.g. to feed metrics; the default does nothing."""

    def stage(self, name: str, seconds: float) -> None: ...

    def batch(self, size: int, seconds: float) -> None: ...


class NoObserver:
    def stage(self, name: str, seconds: float) -> None:
        return None

    def batch(self, size: int, seconds: float) -> None:
        return None


def note_stage(observer: StageObserver, item: WorkItem, stage: str, seconds: float) -> None:
    """Record how long `item` spent in `stage`: in its result's timings and for `observer`."""
    item.timings_ms[stage] = round(seconds * 1000, 3)
    observer.stage(stage, seconds)
    tracing.record_stage(item.span, stage, seconds)


@dataclass(frozen=True)
class PipelineConfig:
    model_name: str = ""
    max_batch_size: int = 32
    max_batch_delay_s: float = 0.05
    # Batches waiting for the inference thread besides the one it runs: keeps the CPU fed.
    queued_batches: int = 1
    # Images downloading or waiting to be decoded at once: bounds the raw bytes held in memory
    # (at most this many bodies of up to the size cap) when decoding falls behind.
    max_undecoded: int = 32
    # ... of which one host may hold at most this many (None: all), so a slow host cannot.
    max_undecoded_per_host: int | None = None
    # Estimated bytes that images being decoded may hold at once (see DecodeBudget).
    decode_budget_bytes: int = 256 * 2**20
