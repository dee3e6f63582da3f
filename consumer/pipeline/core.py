"""`Pipeline`: submitted items are prepared on their own (`preparation.py`), micro-batched
and classified while the next ones prepare; every item ends in exactly one result."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray
from opentelemetry.trace import Span

from consumer import tracing
from consumer.batching import Batcher
from consumer.clock import Clock, LoopClock
from consumer.images.errors import ImageError
from consumer.model import LoadedModel, species_only, top_k
from consumer.pipeline.preparation import ImagePreparation
from consumer.pipeline.work import (
    Decoder,
    Fetcher,
    ModelSource,
    NoObserver,
    PipelineConfig,
    Sink,
    StageObserver,
    WorkItem,
    note_stage,
)
from schemas import TOP_K, ErrorCode, ImageEvent, Prediction, PredictionResult

log = structlog.get_logger(__name__)


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
        self._model_source = model
        self._sink = sink
        self._inference_pool = inference_pool
        self._config = config
        self._observer: StageObserver = observer or NoObserver()
        self._clock: Clock = clock or LoopClock()
        self._preparation = ImagePreparation(
            fetcher, decode, decode_pool, config, self._observer, self._clock
        )
        self._ready: asyncio.Queue[tuple[WorkItem, NDArray[np.uint8]] | _Wake] = asyncio.Queue()
        self._batches: asyncio.Queue[list[tuple[WorkItem, NDArray[np.uint8]]]] = asyncio.Queue(
            maxsize=config.queued_batches
        )
        self._preparing: set[asyncio.Task[None]] = set()
        self._fetching = 0  # items not yet fetched and decoded (or failed)
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

    def submit(self, event: ImageEvent, tag: Any = None, span: Span | None = None) -> WorkItem:
        """Start work on `event` without waiting; the caller bounds `in_flight`. Its stages
        become child spans of `span`, when given."""
        self._raise_if_failed()
        self.start()
        item = WorkItem(event=event, tag=tag, submitted=self._clock.now(), span=span)
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
            image = await self._preparation.prepare(item)
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

    def _note(self, item: WorkItem, stage: str, seconds: float) -> None:
        note_stage(self._observer, item, stage, seconds)

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
            indices, scores = top_k(species_only(probs, model.background_id), TOP_K)
        except Exception as exc:
            log.exception("batch_failed", size=len(items))
            for item in items:
                await self._fail(item, ErrorCode.INTERNAL, f"inference failed: {exc}")
            return
        seconds = self._clock.now() - start
        self._observer.batch(len(items), seconds)
        log.debug("batch_done", size=len(items), ms=round(seconds * 1000, 3))
        for row, (item, idx, score) in enumerate(zip(items, indices, scores, strict=True)):
            item.timings_ms["inference"] = round(seconds * 1000, 3)
            tracing.record_stage(item.span, "inference", seconds)
            predictions = [
                Prediction(label_id=int(i), label=model.labels[int(i)], score=round(float(s), 6))
                for i, s in zip(idx, score, strict=True)
            ]
            background = None
            if model.background_id is not None:
                bg = model.background_id
                background = Prediction(
                    label_id=bg, label=model.labels[bg], score=round(float(probs[row, bg]), 6)
                )
            result = PredictionResult.ok(
                item.event.id,
                item.event.url,
                predictions,
                model.name,
                self._timings(item),
                background,
            )
            log.debug(
                "image_classified",
                id=item.event.id,
                url=item.event.url,
                top1=predictions[0].label,
                score=predictions[0].score,
            )
            await self._emit(item, result)
