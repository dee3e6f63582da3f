"""Commit bookkeeping: which offsets may be committed without skipping unfinished records.

A record is *finished* once its outcome (result or dead-letter copy) is durably handled. The
committable offset of a partition is the lowest offset still unfinished, or one past the last
record received when none is — never past a record in flight (faust #606, #682).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")  # a partition key, e.g. aiokafka's TopicPartition


@dataclass
class _PartitionState:
    unfinished: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the last record received
    committed: int | None = None  # the last offset handed out for commit


class OffsetTracker(Generic[P]):
    """Tracks received and finished offsets per partition (pure logic, no Kafka)."""

    def __init__(self) -> None:
        self._parts: dict[P, _PartitionState] = {}

    def received(self, partition: P, offset: int) -> None:
        state = self._parts.setdefault(partition, _PartitionState())
        state.unfinished.add(offset)
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
            if partition in self._parts:
                self._parts[partition].committed = offset

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
