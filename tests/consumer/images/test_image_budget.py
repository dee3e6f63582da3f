"""DecodeBudget and HostSlots: admission by bytes in arrival order, and fair per-host slots."""

from __future__ import annotations

import asyncio
import platform
import sys

import pytest

from consumer.images import DecodeBudget, HostSlots, ImageError, host_key, memory
from consumer.images.memory import return_large_frees_to_the_system
from schemas import ErrorCode


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


class Holder:
    """A task holding `cost` of a budget until released; records when it got in."""

    def __init__(self, budget: DecodeBudget, cost: int, order: list[str], name: str) -> None:
        self.release = asyncio.Event()
        self.admitted = False
        self.task = asyncio.create_task(self._run(budget, cost, order, name))

    async def _run(self, budget: DecodeBudget, cost: int, order: list[str], name: str) -> None:
        async with budget.reserve(cost):
            self.admitted = True
            order.append(name)
            await self.release.wait()


async def test_decodes_within_the_budget_run_together() -> None:
    budget, order = DecodeBudget(100), []
    a, b = Holder(budget, 60, order, "a"), Holder(budget, 40, order, "b")
    await settle()
    assert (a.admitted, b.admitted) == (True, True)
    assert budget.used_bytes == 100
    a.release.set()
    b.release.set()
    await asyncio.gather(a.task, b.task)
    assert budget.used_bytes == 0


async def test_a_decode_waits_for_room_and_arrival_order_is_kept() -> None:
    budget, order = DecodeBudget(100), []
    first = Holder(budget, 70, order, "first")
    await settle()
    big = Holder(budget, 60, order, "big")
    small = Holder(budget, 10, order, "small")  # would fit now, but must not overtake "big"
    await settle()
    assert (big.admitted, small.admitted) == (False, False)
    assert budget.waiting == 2
    first.release.set()
    await settle()
    assert order == ["first", "big", "small"]
    assert budget.used_bytes == 70
    big.release.set()
    small.release.set()
    await asyncio.gather(first.task, big.task, small.task)
    assert (budget.used_bytes, budget.waiting) == (0, 0)


async def test_a_decode_larger_than_the_whole_budget_is_too_large() -> None:
    budget = DecodeBudget(100 * 2**20)
    with pytest.raises(ImageError) as info:
        async with budget.reserve(101 * 2**20):
            pass
    assert info.value.code is ErrorCode.TOO_LARGE
    assert "101 MiB" in info.value.message
    assert "100 MiB" in info.value.message
    assert budget.used_bytes == 0


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    budget, order = DecodeBudget(100), []
    first = Holder(budget, 90, order, "first")
    await settle()
    big = Holder(budget, 50, order, "big")
    small = Holder(budget, 10, order, "small")
    await settle()
    big.task.cancel()
    await settle()
    assert order == ["first", "small"]  # the head left, the next one fits
    first.release.set()
    small.release.set()
    await asyncio.gather(first.task, small.task)
    with pytest.raises(asyncio.CancelledError):
        await big.task
    assert (budget.used_bytes, budget.waiting) == (0, 0)


async def test_a_task_cancelled_as_it_is_admitted_releases_its_share() -> None:
    budget, order = DecodeBudget(100), []
    first = Holder(budget, 100, order, "first")
    await settle()
    late = Holder(budget, 100, order, "late")
    await settle()
    first.release.set()
    await first.task  # "late" is admitted now, before its task runs again
    late.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late.task
    assert (budget.used_bytes, budget.waiting) == (0, 0)


async def test_a_waiter_cancelled_before_admission_is_skipped() -> None:
    budget, order = DecodeBudget(100), []
    first = Holder(budget, 100, order, "first")
    await settle()
    gone = Holder(budget, 100, order, "gone")
    nxt = Holder(budget, 100, order, "next")
    await settle()
    gone.task.cancel()  # its future is cancelled before its task can clean up
    first.release.set()
    await settle()
    assert order == ["first", "next"]
    nxt.release.set()
    await nxt.task
    with pytest.raises(asyncio.CancelledError):
        await gone.task
    assert (budget.used_bytes, budget.waiting) == (0, 0)


# --- HostSlots ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://Example.COM/a.jpg", "example.com"),
        ("https://example.com:8443/a.jpg", "example.com"),
        ("http://127.0.0.2:8080/x", "127.0.0.2"),
        ("http://[::1]:80/x", "::1"),
        ("not a url", ""),
        ("http://xn--a/x", ""),
    ],
)
def test_host_key_is_the_host_name_without_the_port(url: str, key: str) -> None:
    assert host_key(url) == key


async def hold_slots(
    slots: HostSlots, hosts: list[str]
) -> tuple[list[asyncio.Task[None]], list[str], asyncio.Event]:
    inside: list[str] = []
    release = asyncio.Event()

    async def hold(host: str) -> None:
        async with slots.hold(host):
            inside.append(host)
            await release.wait()

    tasks = [asyncio.create_task(hold(h)) for h in hosts]
    await settle()
    return tasks, inside, release


async def test_a_host_gets_no_more_than_its_share() -> None:
    slots = HostSlots(total=4, per_host=2)
    tasks, inside, release = await hold_slots(slots, ["slow"] * 6 + ["fast"] * 2)
    # The four slow ones beyond the share wait at their host's gate, not for a shared slot.
    assert sorted(inside) == ["fast", "fast", "slow", "slow"]
    assert slots.holding("slow") == 6
    release.set()
    await asyncio.gather(*tasks)
    assert len(inside) == 8
    assert slots.holding("slow") == slots.holding("fast") == 0


async def test_the_shared_bound_holds_across_hosts() -> None:
    slots = HostSlots(total=3, per_host=2)
    tasks, inside, release = await hold_slots(slots, ["a", "a", "b", "b", "c"])
    assert len(inside) == 3
    release.set()
    await asyncio.gather(*tasks)
    assert len(inside) == 5


@pytest.mark.parametrize(
    ("per_host", "effective"), [(None, 5), (9, 5), (2, 2)], ids=["default", "above", "below"]
)
def test_the_share_is_at_most_the_total(per_host: int | None, effective: int) -> None:
    assert HostSlots(5, per_host).per_host == effective


async def test_a_cancelled_waiter_leaves_no_host_entry() -> None:
    slots = HostSlots(total=1, per_host=1)
    tasks, _, release = await hold_slots(slots, ["h", "h"])
    tasks[1].cancel()
    await settle()
    assert slots.holding("h") == 1
    release.set()
    await tasks[0]
    assert slots.holding("h") == 0


# --- memory handed back ------------------------------------------------------------------------


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's mallopt",
)
def test_large_frees_go_back_to_the_system_with_glibc() -> None:
    assert return_large_frees_to_the_system() is True


def test_without_mallopt_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoMallopt:
        def __init__(self, name: object) -> None:
            pass

    monkeypatch.setattr(memory.ctypes, "CDLL", NoMallopt)
    assert return_large_frees_to_the_system() is False
