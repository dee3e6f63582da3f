"""The kit's FakeClock: time moves only when advanced, waits end in deadline order."""

from __future__ import annotations

import asyncio

import pytest

from consumer.clock import LoopClock
from consumer.testing import FakeClock, settle


async def test_sleeps_end_in_deadline_order_as_the_clock_advances() -> None:
    clock = FakeClock(start=10.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 0.2), ("a", 0.1), ("c", 1))]
    await settle()
    assert clock.pending == 3
    await clock.advance(0.15)
    assert woke == [("a", 10.1)]
    await clock.advance(0.1)
    assert woke == [("a", 10.1), ("b", 10.2)]
    assert clock.now() == pytest.approx(10.25)
    await clock.advance(1)
    assert [name for name, _ in woke] == ["a", "b", "c"]
    assert clock.pending == 0
    await asyncio.gather(*tasks)


async def test_a_zero_sleep_returns_at_once() -> None:
    clock = FakeClock()
    await asyncio.wait_for(clock.sleep(0), 1)
    assert clock.pending == 0


async def test_wait_for_returns_the_result_or_times_out_on_the_clock() -> None:
    clock = FakeClock()
    queue: asyncio.Queue[int] = asyncio.Queue()
    waiting = asyncio.create_task(clock.wait_for(queue.get(), 0.5))
    await settle()
    queue.put_nowait(7)
    assert await waiting == 7

    timing_out = asyncio.create_task(clock.wait_for(queue.get(), 0.5))
    await settle()  # the wait starts: its deadline is 0.5 s from now
    await clock.advance(0.4)
    assert not timing_out.done()
    await clock.advance(0.1)
    with pytest.raises(TimeoutError):
        await timing_out
    queue.put_nowait(8)
    assert queue.get_nowait() == 8  # the cancelled get took nothing


async def test_wait_for_without_a_limit_just_waits() -> None:
    clock = FakeClock()
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    future.set_result("done")
    assert await clock.wait_for(future, None) == "done"


async def test_cancelling_a_wait_cancels_what_it_waits_for() -> None:
    clock = FakeClock()
    inner: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    outer = asyncio.create_task(clock.wait_for(inner, 5))
    await settle()
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert inner.cancelled()


async def test_time_does_not_run_backwards() -> None:
    with pytest.raises(ValueError, match="forward"):
        await FakeClock().advance(-1)


async def test_the_loop_clock_waits_on_real_time() -> None:
    clock = LoopClock()
    before = clock.now()
    with pytest.raises(TimeoutError):
        await clock.wait_for(asyncio.Event().wait(), 0.01)
    assert clock.now() > before
