"""Commit bookkeeping: which offsets may be committed without skipping unfinished records.

A record is *finished* once its outcome (result or dead-letter copy) is durably handled. The
committable offset of a partition is the lowest offset still unfinished, or one past the last
record received when none is — never past a record in flight (faust #606, #682).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")  # a partition key, e.g. aiokafka's TopicPartition


@dataclass
class _PartitionState:
    unfinished: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the last record received
    committed: int | None = None  # the last offset handed out for commit
    # (offset, clock reading) of each record received and not yet committed, oldest first.
    uncommitted: deque[tuple[int, float]] = field(default_factory=deque)


class OffsetTracker(Generic[P]):
    """Tracks received and finished offsets per partition (pure logic, no Kafka); `clock`
    timestamps receipts, for the age of the oldest record not committed yet."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._parts: dict[P, _PartitionState] = {}
        self._clock = clock

    def received(self, partition: P, offset: int) -> None:
        state = self._parts.setdefault(partition, _PartitionState())
        state.unfinished.add(offset)
        state.uncommitted.append((offset, self._clock()))
        if state.next_offset is None or offset >= state.next_offset:
            state.next_offset = offset + 1

    def finished(self, partition: P, offset: int) -> None:
        state = self._parts.get(partition)
        if state is not None:
            state.unfinished.discard(offset)

    def unfinished(self, partitions: Iterable[P] | None = None) -> int:
        """How many records are received but not finished (in `partitions`, or in all)."""
        keys = self._parts.keys() if partitions is None else partitions
        return sum(len(self._parts[p].unfinished) for p in keys if p in self._parts)

    def is_unfinished(self, partition: P, offset: int) -> bool:
        state = self._parts.get(partition)
        return state is not None and offset in state.unfinished

    def next_offset(self, partition: P) -> int | None:
        """One past the last offset received from `partition`."""
        state = self._parts.get(partition)
        return state.next_offset if state is not None else None

    def committable(self) -> dict[P, int]:
        """Offsets to commit now: only partitions whose safe offset moved since last time."""
        out: dict[P, int] = {}
        for partition, state in self._parts.items():
            safe = self._safe_offset(state)
            if safe is not None and safe != state.committed:
                out[partition] = safe
        return out

    def mark_committed(self, offsets: dict[P, int]) -> None:
        for partition, offset in offsets.items():
            state = self._parts.get(partition)
            if state is None:
                continue
            state.committed = offset
            while state.uncommitted and state.uncommitted[0][0] < offset:
                state.uncommitted.popleft()

    def oldest_uncommitted_age(self, partition: P) -> float:
        """Seconds since the oldest record of `partition` not committed yet was received; 0 when
        every record received is committed. A stuck partition shows as an age that only grows."""
        state = self._parts.get(partition)
        if state is None or not state.uncommitted:
            return 0.0
        return max(0.0, self._clock() - state.uncommitted[0][1])

    def committed_offsets(self, partitions: Iterable[P]) -> dict[P, int]:
        """The offsets last handed out for commit (and marked committed) of `partitions`."""
        out: dict[P, int] = {}
        for partition in partitions:
            state = self._parts.get(partition)
            if state is not None and state.committed is not None:
                out[partition] = state.committed
        return out

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop all state of partitions this consumer no longer owns."""
        for partition in partitions:
            self._parts.pop(partition, None)

    @staticmethod
    def _safe_offset(state: _PartitionState) -> int | None:
        if state.unfinished:
            return min(state.unfinished)
        return state.next_offset
