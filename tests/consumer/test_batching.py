"""The batcher's closing rules, with the clock passed in: no sleeps."""

from __future__ import annotations

import pytest

from consumer.batching import Batcher


def test_closes_at_max_size() -> None:
    b: Batcher[int] = Batcher(max_size=3, max_delay_s=10.0)
    for i in range(3):
        assert not b.full
        b.add(i, now=0.0)
    assert b.full
    assert b.due(now=0.0)
    assert b.take() == [0, 1, 2]
    assert b.items == []
    assert b.deadline is None


def test_deadline_counts_from_the_first_item_not_the_last() -> None:
    b: Batcher[str] = Batcher(max_size=100, max_delay_s=0.05)
    b.add("a", now=1.00)
    b.add("b", now=1.04)  # a later item must not push the deadline back
    assert b.deadline == pytest.approx(1.05)
    assert not b.due(now=1.049)
    assert b.due(now=1.05)
    assert b.time_left(now=1.02) == pytest.approx(0.03)
    assert b.time_left(now=2.0) == 0.0


def test_empty_batch_is_never_due() -> None:
    b: Batcher[int] = Batcher(max_size=1, max_delay_s=0.0)
    assert not b.due(now=1e9)
    assert b.time_left(now=0.0) is None


def test_new_batch_gets_a_new_deadline() -> None:
    b: Batcher[int] = Batcher(max_size=10, max_delay_s=1.0)
    b.add(1, now=0.0)
    b.take()
    b.add(2, now=5.0)
    assert b.deadline == 6.0


def test_rejects_empty_max_size() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Batcher(max_size=0, max_delay_s=1.0)
