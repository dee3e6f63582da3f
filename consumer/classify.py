"""The standalone job: classify a list of URLs with the shared pipeline, printing to stdout."""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

import structlog
from pydantic import ValidationError

from consumer.config import Settings
from consumer.model import LoadedModel
from consumer.pipeline import WorkItem
from consumer.run_report import RunStats, format_result, format_summary
from consumer.runtime import Runtime
from schemas import ErrorCode, ImageEvent, PredictionResult

log = structlog.get_logger(__name__)

# The five photos the original prototype classified (Wikimedia Commons and other hosts).
SAMPLE_IMAGE_URLS = (
    "https://upload.wikimedia.org/wikipedia/commons/c/c8/Phalacrocorax_varius_-Waikawa%2C_Marlborough%2C_New_Zealand-8.jpg",
    "https://quiz.natureid.no/bird/db_media/eBook/679edc606d9a363f775dabf0497d31de8c3d7060.jpg",
    "https://upload.wikimedia.org/wikipedia/commons/8/81/Eumomota_superciliosa.jpg",
    "https://i.pinimg.com/originals/f3/fb/92/f3fb92afce5ddff09a7370d90d021225.jpg",
    "https://cdn.britannica.com/77/189277-004-0A3BC3D4.jpg",
)


class OrderedPrinter:
    """Prints results in input order as soon as every earlier one is known."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self._out = out
        self._json = as_json
        self._pending: dict[int, PredictionResult] = {}
        self._next = 0

    def add(self, index: int, result: PredictionResult) -> None:
        self._pending[index] = result
        while self._next in self._pending:
            self._print(self._pending.pop(self._next))
            self._next += 1

    def _print(self, result: PredictionResult) -> None:
        if self._json:
            self._out.write(result.to_json().decode() + "\n")
        else:
            self._out.write(format_result(result))
        self._out.flush()


def make_events(urls: list[str]) -> tuple[list[ImageEvent | None], dict[int, PredictionResult]]:
    """Events for valid URLs; ready error results for the others (by position)."""
    events: list[ImageEvent | None] = []
    invalid: dict[int, PredictionResult] = {}
    for i, url in enumerate(urls):
        event_id = str(i + 1)
        try:
            events.append(ImageEvent(id=event_id, url=url))
        except ValidationError:
            events.append(None)
            invalid[i] = PredictionResult.failed(
                event_id,
                url,
                ErrorCode.INVALID_EVENT,
                "url must be an absolute http:// or https:// URL of at most 2048 characters",
                "",
            )
    return events, invalid


async def run_classify(
    settings: Settings, urls: list[str], out: TextIO, as_json: bool, started: float
) -> int:
    """Classify `urls`; returns the exit code (0 all ok, 1 some failed). Raises ModelError."""
    stats = RunStats(started=started)
    printer = OrderedPrinter(out, as_json)
    events, invalid = make_events(urls)

    async with Runtime(settings, one_shot=True) as rt:
        model_task: asyncio.Task[LoadedModel] = asyncio.create_task(rt.load_model())

        async def sink(item: WorkItem, result: PredictionResult) -> None:
            stats.statuses[result.status] += 1
            printer.add(item.tag, result)

        pipeline = rt.pipeline(model_task, sink, observer=stats)
        for index, event in enumerate(events):
            if event is None:
                stats.statuses["error"] += 1
                printer.add(index, invalid[index].model_copy(update={"model": settings.model_url}))
            else:
                pipeline.submit(event, tag=index)
        try:
            await pipeline.drain()
            model = await model_task
        finally:
            await pipeline.close()
            if not model_task.done():
                model_task.cancel()

    total = time.perf_counter() - started
    # On a terminal the summary below says it all: the log line would only repeat it there.
    done = log.info if as_json else log.debug
    done(
        "run_done",
        images=len(urls),
        ok=stats.statuses["ok"],
        failed=stats.statuses["error"],
        model_fetch_s=round(model.fetch_s, 3),
        model_load_s=round(model.load_s, 3),
        inference_s=round(stats.inference_s, 3),
        batches=stats.batches,
        total_s=round(total, 3),
    )
    if not as_json:
        out.write(format_summary(model, stats, total))
    return 0 if stats.statuses["error"] == 0 else 1
