"""A clock that moves only when the test says so (`consumer.clock.Clock`).

Waits registered on it (`wait_for`, `sleep`) end when `advance` moves the time past their
deadline, so time-based behaviour is tested deterministically and without real sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

# Event-loop turns `advance` gives the woken tasks to run before it returns.
_SETTLE_TURNS = 20


class FakeClock:
    """Starts at `start` seconds; `advance` moves it and wakes the waits that fall due."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()  # `now` is read from worker threads too
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        with self._lock:
            return self._now

    @property
    def pending(self) -> int:
        """Waits not yet due (cancelled ones excluded)."""
        return sum(not fut.done() for _, _, fut in self._timers)

    def _timer(self, delay: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if delay <= 0:
            future.set_result(None)
        else:
            heapq.heappush(self._timers, (self.now() + delay, next(self._seq), future))
        return future

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been advanced by `seconds`."""
        await self._timer(seconds)

    async def wait_for(self, awaitable: Awaitable[T], limit_s: float | None) -> T:
        if limit_s is None:
            return await awaitable
        task = asyncio.ensure_future(awaitable)
        timer = self._timer(limit_s)
        waits: list[asyncio.Future[Any]] = [task, timer]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            timer.cancel()
        if task.done():
            return task.result()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            raise TimeoutError from None
        # The awaitable finished while being cancelled: its result is not lost.
        return task.result()

    async def advance(self, seconds: float) -> None:
        """Move the time forward, waking each due wait in deadline order and letting the event
        loop run what that woke before moving on."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        target = self.now() + seconds
        while self._timers and self._timers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._timers)
            with self._lock:
                self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
                await settle()
        with self._lock:
            self._now = target
        await settle()


async def settle(turns: int = _SETTLE_TURNS) -> None:
    """Give the event loop `turns` turns: what is ready to run (not threads) gets to run."""
    for _ in range(turns):
        await asyncio.sleep(0)
