"""The core: events in, results out.

Each submitted event is fetched (asyncio, a fair share of the slots per host) and decoded
(decode thread pool) on its own; a decode starts once its estimated memory fits the decode
budget. Decoded images are micro-batched and classified (inference thread) while the next
images download and decode, so the stages overlap. Every submitted item ends in exactly one
result passed to the sink, whatever fails. Transports (the CLI, the Kafka service) only submit
and sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import structlog
from numpy.typing import NDArray

from consumer.batching import Batcher
from consumer.clock import Clock, LoopClock
from consumer.images.budget import DecodeBudget
from consumer.images.errors import ImageError
from consumer.images.slots import HostSlots, host_key
from consumer.model import LoadedModel, top_k
from schemas import TOP_K, ErrorCode, ImageEvent, Prediction, PredictionResult

log = structlog.get_logger(__name__)


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


Sink = Callable[[WorkItem, PredictionResult], Awaitable[None]]


class StageObserver(Protocol):
    """Receives stage durations, e.g. to feed metrics; the default does nothing."""

    def stage(self, name: str, seconds: float) -> None: ...

    def batch(self, size: int, seconds: float) -> None: ...


class _NoObserver:
    def stage(self, name: str, seconds: float) -> None:
        return None

    def batch(self, size: int, seconds: float) -> None:
        return None


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


class _Wake:
    """Queued to make the batcher re-check its closing conditions."""


_WAKE = _Wake()


class Pipeline:
    """Runs fetch, decode, batch and inference for submitted items; see the module docstring."""

    def __init__(
        self,
        fetcher: Fetcher,
        decode: Decoder,
        model: ModelSource,
        sink: Sink,
        decode_pool: Executor,
        inference_pool: Executor,
        config: PipelineConfig,
        observer: StageObserver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._decoder = decode
        self._model_source = model
        self._sink = sink
        self._decode_pool = decode_pool
        self._inference_pool = inference_pool
        self._config = config
        self._observer: StageObserver = observer or _NoObserver()
        self._clock: Clock = clock or LoopClock()
        self._ready: asyncio.Queue[tuple[WorkItem, NDArray[np.uint8]] | _Wake] = asyncio.Queue()
        self._batches: asyncio.Queue[list[tuple[WorkItem, NDArray[np.uint8]]]] = asyncio.Queue(
            maxsize=config.queued_batches
        )
        self._preparing: set[asyncio.Task[None]] = set()
        self._fetching = 0  # items not yet fetched and decoded (or failed)
        self._undecoded = HostSlots(config.max_undecoded, config.max_undecoded_per_host)
        self._decode_budget = DecodeBudget(config.decode_budget_bytes)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._model: LoadedModel | None = None
        self._failure: BaseException | None = None
        self._workers: list[asyncio.Task[None]] = []

    @property
    def in_flight(self) -> int:
        """Items submitted whose result has not yet been handed to the sink."""
        return self._in_flight

    @property
    def model(self) -> LoadedModel | None:
        return self._model

    def start(self) -> None:
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._batch_loop(), name="pipeline-batcher"),
                asyncio.create_task(self._inference_loop(), name="pipeline-inference"),
            ]

    def submit(self, event: ImageEvent, tag: Any = None) -> WorkItem:
        """Start work on `event` without waiting; the caller bounds `in_flight`."""
        self._raise_if_failed()
        self.start()
        item = WorkItem(event=event, tag=tag, submitted=self._clock.now())
        self._in_flight += 1
        self._fetching += 1
        self._idle.clear()
        task = asyncio.create_task(self._prepare(item))
        self._preparing.add(task)
        task.add_done_callback(self._preparing.discard)
        return item

    async def drain(self) -> None:
        """Wait until every submitted item has its result (raises if the model failed)."""
        while self._in_flight:
            self._raise_if_failed()
            waiter = asyncio.ensure_future(self._idle.wait())
            await asyncio.wait([waiter, *self._workers], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        self._raise_if_failed()

    async def close(self) -> None:
        """Stop the workers; items still in flight get no result (call `drain` first)."""
        for task in [*self._workers, *self._preparing]:
            task.cancel()
        await asyncio.gather(*self._workers, *self._preparing, return_exceptions=True)
        self._workers = []

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _prepare(self, item: WorkItem) -> None:
        event = item.event
        # This task's own context: every line logged below it (retries too) names the image.
        structlog.contextvars.bind_contextvars(id=event.id, url=event.url)
        try:
            waited = self._clock.now()
            async with self._undecoded.hold(host_key(event.url)):
                # Time spent waiting for a download slot while decoding is behind.
                self._note(item, "fetch_wait", self._clock.now() - waited)
                image = await self._fetch_and_decode(item)
        except ImageError as exc:
            await self._fail(item, exc.code, exc.message)
        except Exception as exc:
            log.exception("image_internal_error", id=event.id, url=event.url)
            await self._fail(item, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        else:
            item.timings_ms["ready_at"] = self._clock.now()
            self._ready.put_nowait((item, image))
            return
        finally:
            self._fetching -= 1
            if self._fetching == 0:
                self._ready.put_nowait(_WAKE)

    async def _fetch_and_decode(self, item: WorkItem) -> NDArray[np.uint8]:
        event = item.event
        start = self._clock.now()
        data = await self._fetcher.fetch(event.url)
        fetched = self._clock.now()
        self._note(item, "fetch", fetched - start)
        log.debug(
            "image_fetched",
            id=event.id,
            url=event.url,
            bytes=len(data),
            ms=item.timings_ms["fetch"],
        )
        loop = asyncio.get_running_loop()
        opened = await loop.run_in_executor(self._decode_pool, self._decoder.open, data)
        async with self._decode_budget.reserve(opened.cost_bytes):
            started, image = await loop.run_in_executor(
                self._decode_pool, self._timed_decode, opened
            )
        # Header read, waiting for room in the budget and for a decode thread.
        self._note(item, "decode_wait", started - fetched)
        self._note(item, "decode", self._clock.now() - started)
        log.debug("image_decoded", id=event.id, url=event.url, ms=item.timings_ms["decode"])
        return image

    def _timed_decode(self, opened: OpenedImage) -> tuple[float, NDArray[np.uint8]]:
        return self._clock.now(), opened.decode()

    def _note(self, item: WorkItem, stage: str, seconds: float) -> None:
        item.timings_ms[stage] = round(seconds * 1000, 3)
        self._observer.stage(stage, seconds)

    async def _fail(self, item: WorkItem, code: ErrorCode, message: str) -> None:
        log.debug(
            "image_failed", id=item.event.id, url=item.event.url, code=code.value, message=message
        )
        result = PredictionResult.failed(
            item.event.id,
            item.event.url,
            code,
            message,
            self._config.model_name,
            self._timings(item),
        )
        await self._emit(item, result)

    def _timings(self, item: WorkItem) -> dict[str, float]:
        timings = {k: v for k, v in item.timings_ms.items() if k != "ready_at"}
        timings["total"] = round((self._clock.now() - item.submitted) * 1000, 3)
        return timings

    async def _emit(self, item: WorkItem, result: PredictionResult) -> None:
        try:
            await self._sink(item, result)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def _nothing_else_coming(self) -> bool:
        """True when no item still downloading or decoding could join the batch."""
        return self._fetching == 0 and self._ready.empty()

    async def _batch_loop(self) -> None:
        cfg = self._config
        batcher: Batcher[tuple[WorkItem, NDArray[np.uint8]]] = Batcher(
            cfg.max_batch_size, cfg.max_batch_delay_s
        )
        while True:
            if not batcher.items:
                self._take(batcher, await self._ready.get())
            while not batcher.full and not self._ready.empty():
                self._take(batcher, self._ready.get_nowait())
            now = self._clock.now()
            # While the model is still loading, keep filling: nothing can run yet anyway.
            model_pending = self._model is None
            if batcher.items and (
                batcher.full
                or (not model_pending and (batcher.due(now) or self._nothing_else_coming()))
            ):
                await self._batches.put(batcher.take())
                continue
            timeout = None if model_pending or not batcher.items else batcher.time_left(now)
            try:
                nxt = await self._clock.wait_for(self._ready.get(), timeout)
            except TimeoutError:
                continue
            self._take(batcher, nxt)

    def _take(
        self,
        batcher: Batcher[tuple[WorkItem, NDArray[np.uint8]]],
        entry: tuple[WorkItem, NDArray[np.uint8]] | _Wake,
    ) -> None:
        if not isinstance(entry, _Wake):
            batcher.add(entry, self._clock.now())

    async def _inference_loop(self) -> None:
        try:
            self._model = await self._model_source()
        except BaseException as exc:
            self._failure = exc
            raise
        # Wake the batcher: it holds batches back while the model loads.
        self._ready.put_nowait(_WAKE)
        while True:
            batch = await self._batches.get()
            await self._run_batch(self._model, batch)

    async def _run_batch(
        self, model: LoadedModel, batch: list[tuple[WorkItem, NDArray[np.uint8]]]
    ) -> None:
        items = [item for item, _ in batch]
        start = self._clock.now()
        for item in items:
            self._note(item, "queue", start - item.timings_ms.pop("ready_at", start))
        try:
            pixels = np.stack([image for _, image in batch])
            loop = asyncio.get_running_loop()
            probs = await loop.run_in_executor(
                self._inference_pool, model.classifier.predict, pixels
            )
            indices, scores = top_k(probs, TOP_K)
        except Exception as exc:
            log.exception("batch_failed", size=len(items))
            for item in items:
                await self._fail(item, ErrorCode.INTERNAL, f"inference failed: {exc}")
            return
        seconds = self._clock.now() - start
        self._observer.batch(len(items), seconds)
        log.debug("batch_done", size=len(items), ms=round(seconds * 1000, 3))
        for item, idx, score in zip(items, indices, scores, strict=True):
            item.timings_ms["inference"] = round(seconds * 1000, 3)
            predictions = [
                Prediction(label_id=int(i), label=model.labels[int(i)], score=round(float(s), 6))
                for i, s in zip(idx, score, strict=True)
            ]
            result = PredictionResult.ok(
                item.event.id, item.event.url, predictions, model.name, self._timings(item)
            )
            log.debug(
                "image_classified",
                id=item.event.id,
                url=item.event.url,
                top1=predictions[0].label,
                score=predictions[0].score,
            )
            await self._emit(item, result)
