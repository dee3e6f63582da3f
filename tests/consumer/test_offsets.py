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
