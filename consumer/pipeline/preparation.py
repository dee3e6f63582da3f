"""Per image, before batching: wait for a download slot (a fair share per host), fetch, read
the header, wait for room in the decode budget, decode (decode thread pool)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

import numpy as np
import structlog
from numpy.typing import NDArray

from consumer.clock import Clock
from consumer.images.budget import DecodeBudget
from consumer.images.slots import HostSlots, host_key
from consumer.pipeline.work import (
    Decoder,
    Fetcher,
    OpenedImage,
    PipelineConfig,
    StageObserver,
    WorkItem,
    note_stage,
)

log = structlog.get_logger(__name__)


class ImagePreparation:
    """Turns work items into decoded images within the pipeline's memory bounds: at most
    `max_undecoded` bodies held (per host: `max_undecoded_per_host`), decodes admitted
    against `decode_budget_bytes`. Notes the stages fetch_wait, fetch, decode_wait, decode."""

    def __init__(
        self,
        fetcher: Fetcher,
        decoder: Decoder,
        decode_pool: Executor,
        config: PipelineConfig,
        observer: StageObserver,
        clock: Clock,
    ) -> None:
        self._fetcher = fetcher
        self._decoder = decoder
        self._decode_pool = decode_pool
        self._observer = observer
        self._clock = clock
        self._undecoded = HostSlots(config.max_undecoded, config.max_undecoded_per_host)
        self._decode_budget = DecodeBudget(config.decode_budget_bytes)

    async def prepare(self, item: WorkItem) -> NDArray[np.uint8]:
        """The decoded image of `item`; raises `ImageError` (or anything else, a bug)."""
        waited = self._clock.now()
        async with self._undecoded.hold(host_key(item.event.url)):
            # Time spent waiting for a download slot while decoding is behind.
            self._note(item, "fetch_wait", self._clock.now() - waited)
            return await self._fetch_and_decode(item)

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
        note_stage(self._observer, item, stage, seconds)
