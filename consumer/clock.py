"""The time the pipeline reads and waits on, injected so tests can move it by hand.

`LoopClock` is the real one; `consumer.testing.FakeClock` is a clock tests advance themselves,
so a batch closing at its deadline is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (any origin); may be called from any thread."""
        ...

    async def wait_for(self, awaitable: Awaitable[T], limit_s: float | None) -> T:
        """`awaitable`'s result, or TimeoutError once `limit_s` seconds of this clock passed
        (the awaitable is then cancelled); no limit when `limit_s` is None."""
        ...


class LoopClock:
    """Wall time: `time.perf_counter` to read, the event loop's timers to wait."""

    def now(self) -> float:
        return time.perf_counter()

    async def wait_for(self, awaitable: Awaitable[T], limit_s: float | None) -> T:
        return await asyncio.wait_for(awaitable, limit_s)
