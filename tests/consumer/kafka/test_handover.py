"""Waiting until committed offsets are visible to the next owner (fake reads, no broker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina
from aiokafka.errors import KafkaConnectionError

from consumer.kafka.handover import wait_offsets_visible


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    # Unlimited attempts as in production, without the waits between them.
    with stamina.set_testing(True, attempts=1000, cap=True):
        yield


class LaggingOffsets:
    """Committed offsets that show the new value only after `stale_reads` reads per partition
    (as while the transaction markers are not yet written)."""

    def __init__(self, committed: dict[str, int], stale_reads: int, old: int | None = None):
        self.committed = committed
        self.stale_reads = stale_reads
        self.old = old
        self.reads: dict[str, int] = {}
        self.fail_first = False

    async def read(self, partition: str) -> int | None:
        self.reads[partition] = self.reads.get(partition, 0) + 1
        if self.fail_first:
            self.fail_first = False
            raise KafkaConnectionError("reset")
        if self.reads[partition] <= self.stale_reads:
            return self.old
        return self.committed[partition]


async def test_offsets_already_visible_take_one_read_each() -> None:
    offsets = LaggingOffsets({"p0": 10, "p1": 20}, stale_reads=0)
    assert await wait_offsets_visible(offsets.read, {"p0": 10, "p1": 20}, timeout_s=5)
    assert offsets.reads == {"p0": 1, "p1": 1}


async def test_stale_offsets_are_read_again_until_the_commit_shows() -> None:
    offsets = LaggingOffsets({"p0": 10, "p1": 20}, stale_reads=3, old=4)
    assert await wait_offsets_visible(offsets.read, {"p0": 10, "p1": 20}, timeout_s=5)
    assert offsets.reads == {"p0": 4, "p1": 4}


async def test_a_partition_never_committed_before_reads_none_until_visible() -> None:
    offsets = LaggingOffsets({"p0": 3}, stale_reads=2, old=None)
    assert await wait_offsets_visible(offsets.read, {"p0": 3}, timeout_s=5)


async def test_a_failed_read_is_read_again() -> None:
    offsets = LaggingOffsets({"p0": 10}, stale_reads=0)
    offsets.fail_first = True
    assert await wait_offsets_visible(offsets.read, {"p0": 10}, timeout_s=5)
    assert offsets.reads == {"p0": 2}


async def test_offsets_that_never_show_give_up_at_the_timeout() -> None:
    offsets = LaggingOffsets({"p0": 10}, stale_reads=10**9, old=4)
    with stamina.set_testing(False):  # real waits, so the timeout is what ends it
        assert not await wait_offsets_visible(offsets.read, {"p0": 10}, timeout_s=0.3)
    assert offsets.reads["p0"] > 1


async def test_nothing_to_wait_for() -> None:
    offsets = LaggingOffsets({}, stale_reads=0)
    assert await wait_offsets_visible(offsets.read, {}, timeout_s=1)
    assert offsets.reads == {}
