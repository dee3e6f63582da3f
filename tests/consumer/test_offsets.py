"""Commit bookkeeping: never commit past a record still in flight."""

from __future__ import annotations

from consumer.kafka.offsets import OffsetTracker


def test_commits_only_the_contiguous_finished_prefix() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    for offset in range(5):
        t.received("p0", offset)
    t.finished("p0", 0)
    t.finished("p0", 2)
    t.finished("p0", 3)
    # 1 is still in flight: committing 4 would skip it after a crash.
    assert t.committable() == {"p0": 1}
    t.mark_committed({"p0": 1})
    assert t.committable() == {}
    t.finished("p0", 1)
    assert t.committable() == {"p0": 4}
    t.finished("p0", 4)
    assert t.committable() == {"p0": 5}
    assert t.unfinished() == 0


def test_gaps_in_offsets_do_not_block_commits() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    # Compaction or transaction markers leave holes: 10, 11, 15.
    for offset in (10, 11, 15):
        t.received("p", offset)
        t.finished("p", offset)
    assert t.committable() == {"p": 16}
    assert t.next_offset("p") == 16
    assert t.next_offset("other") is None


def test_partitions_are_independent() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.received("a", 0)
    t.received("b", 0)
    t.finished("b", 0)
    assert t.committable() == {"a": 0, "b": 1}
    assert t.unfinished() == 1
    assert t.unfinished(["a"]) == 1
    assert t.unfinished(["b", "zzz"]) == 0
    assert t.is_unfinished("a", 0)
    assert not t.is_unfinished("b", 0)


def test_forgotten_partitions_disappear_and_late_finishes_are_ignored() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.received("a", 7)
    t.forget(["a"])
    t.finished("a", 7)  # an ack arriving after a revoke
    t.mark_committed({"a": 8})
    assert t.committable() == {}
    assert t.unfinished() == 0
    assert not t.is_unfinished("a", 7)


def test_redelivered_older_offsets_keep_the_high_water_mark() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.received("p", 5)
    t.received("p", 3)
    assert t.next_offset("p") == 6
    t.finished("p", 5)
    assert t.committable() == {"p": 3}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_oldest_uncommitted_record_ages_until_its_offset_is_committed() -> None:
    clock = FakeClock()
    t: OffsetTracker[str] = OffsetTracker(clock)
    assert t.oldest_uncommitted_age("p") == 0.0
    t.received("p", 0)
    clock.now += 1
    for offset in (1, 2):
        t.received("p", offset)
    clock.now += 4
    assert t.oldest_uncommitted_age("p") == 5.0
    # 1 and 2 finish, 0 is stuck: the commit cannot pass it and its age keeps growing, though
    # lag (records not yet read) is 0 meanwhile.
    t.finished("p", 1)
    t.finished("p", 2)
    t.mark_committed(t.committable())
    clock.now += 60
    assert t.oldest_uncommitted_age("p") == 65.0
    t.finished("p", 0)
    t.mark_committed(t.committable())
    assert t.oldest_uncommitted_age("p") == 0.0
    # Finished but not yet committed still counts (exactly-once: not yet in a transaction).
    t.received("p", 3)
    t.finished("p", 3)
    clock.now += 2
    assert t.oldest_uncommitted_age("p") == 2.0
    t.forget(["p"])
    assert t.oldest_uncommitted_age("p") == 0.0
