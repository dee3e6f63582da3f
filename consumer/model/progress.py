"""Progress of a model download: INFO events at a fixed interval, and a bar on a terminal.

A periodic task, not a per-chunk check, writes the events, so a download that stalls still
reports (with a rate of 0) instead of going silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable

import structlog

log = structlog.get_logger(__name__)

PROGRESS_INTERVAL_S = 10.0


class DownloadProgress:
    """Bytes received so far of one download; `add` them as they arrive."""

    def __init__(
        self,
        url: str,
        total: int | None,
        bar: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.total = total
        self.done = 0
        self._bar = bar
        self._clock = clock
        self._started = clock()
        self._last_report = (self._started, 0)

    def add(self, received: int) -> None:
        self.done += received
        if self._bar:
            of = f" / {self.total / 2**20:.1f}" if self.total else ""
            sys.stderr.write(f"\rdownloading model: {self.done / 2**20:.1f}{of} MiB")
            sys.stderr.flush()

    def report(self) -> None:
        """Log what arrived so far, the rate since the previous report and the elapsed time."""
        now = self._clock()
        since, done_then = self._last_report
        rate = (self.done - done_then) / (now - since) if now > since else 0.0
        elapsed = now - self._started
        eta = None
        if self.total and self.done and elapsed > 0:
            eta = round((self.total - self.done) / (self.done / elapsed), 1)
        log.info(
            "model_download_progress",
            url=self.url,
            bytes=self.done,
            total_bytes=self.total,
            percent=round(100 * self.done / self.total, 1) if self.total else None,
            rate_kib_s=round(rate / 1024, 1),
            elapsed_s=round(elapsed, 1),
            eta_s=eta,
        )
        self._last_report = (now, self.done)

    def finish(self) -> None:
        if self._bar:
            sys.stderr.write("\n")


@contextlib.asynccontextmanager
async def reported(progress: DownloadProgress, interval_s: float) -> AsyncIterator[None]:
    """Report `progress` every `interval_s` while the body of the `async with` runs."""

    async def every_interval() -> None:
        while True:
            await asyncio.sleep(interval_s)
            progress.report()

    log.info("model_download_started", url=progress.url, total_bytes=progress.total)
    task = asyncio.create_task(every_interval())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        progress.finish()
