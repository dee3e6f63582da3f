"""The memory budget of decoding: bytes that images being decoded may hold at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from consumer.images.errors import ImageError
from schemas import ErrorCode

MIB = 2**20


class DecodeBudget:
    """Admits decodes while their estimated peak memory fits in `total_bytes`.

    Decodes are admitted in arrival order (a large one waiting is not overtaken by small ones,
    so it cannot starve); one whose estimate alone exceeds the budget is refused `too_large`.
    The worst case of decoding is the budget, whatever the number of decode threads.
    """

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self._used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def used_bytes(self) -> int:
        """Bytes reserved by the decodes admitted and not yet finished."""
        return self._used

    @property
    def waiting(self) -> int:
        """Decodes waiting for room in the budget."""
        return len(self._waiting)

    @asynccontextmanager
    async def reserve(self, cost_bytes: int) -> AsyncIterator[None]:
        """Hold `cost_bytes` of the budget for the body of the `async with`."""
        if cost_bytes > self.total_bytes:
            raise ImageError(
                ErrorCode.TOO_LARGE,
                f"decoding needs about {cost_bytes / MIB:.0f} MiB, more than the whole decode "
                f"memory budget of {self.total_bytes / MIB:.0f} MiB",
            )
        if self._waiting or self._used + cost_bytes > self.total_bytes:
            await self._wait_for_room(cost_bytes)
        else:
            self._used += cost_bytes
        try:
            yield
        finally:
            self._release(cost_bytes)

    async def _wait_for_room(self, cost_bytes: int) -> None:
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (cost_bytes, admitted)
        self._waiting.append(entry)
        try:
            await admitted
        except asyncio.CancelledError:
            if admitted.done() and not admitted.cancelled():
                self._release(cost_bytes)  # admitted just before the cancellation arrived
            else:
                with contextlib.suppress(ValueError):  # _admit may have dropped it already
                    self._waiting.remove(entry)
                self._admit()  # it may have been the head that held the others back
            raise

    def _release(self, cost_bytes: int) -> None:
        self._used -= cost_bytes
        self._admit()

    def _admit(self) -> None:
        while self._waiting:
            cost_bytes, admitted = self._waiting[0]
            if admitted.done():  # its task was cancelled while waiting
                self._waiting.popleft()
                continue
            if self._used + cost_bytes > self.total_bytes:
                return
            self._waiting.popleft()
            self._used += cost_bytes
            admitted.set_result(None)
