"""Committed offsets of the cluster's groups, and the lag with which a transaction's offsets
show: Kafka writes a transaction's commit markers after answering EndTxn, and until then an
OffsetFetch still returns the previous offsets (consumer/kafka/handover.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass
class Commit:
    """Offsets a group committed, by a consumer or through a transaction."""

    group_id: str
    offsets: dict[TopicPartition, int]
    transactional: bool


@dataclass
class GroupOffsets:
    """What each group committed (`committed`), and what an OffsetFetch reports: offsets
    committed in a transaction show only after `transactional_lag_reads` further fetches of
    their partition."""

    transactional_lag_reads: int = 0
    commits: list[Commit] = field(default_factory=list)
    _committed: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)
    _shown: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)
    _lagging: dict[tuple[str, TopicPartition], int] = field(default_factory=dict)

    def committed(self, group_id: str) -> dict[TopicPartition, int]:
        """The group's committed offsets (a copy)."""
        return dict(self._committed.get(group_id, {}))

    def commit(
        self, group_id: str, offsets: dict[TopicPartition, int], transactional: bool
    ) -> None:
        self._committed.setdefault(group_id, {}).update(offsets)
        self.commits.append(Commit(group_id, dict(offsets), transactional))
        for tp, offset in offsets.items():
            if transactional and self.transactional_lag_reads:
                self._lagging[(group_id, tp)] = self.transactional_lag_reads
            else:
                self._lagging.pop((group_id, tp), None)
                self._shown.setdefault(group_id, {})[tp] = offset

    def shown(self, group_id: str) -> dict[TopicPartition, int]:
        """What an OffsetFetch of every partition would report now (counts as no fetch)."""
        return dict(self._shown.get(group_id, {}))

    def fetch(self, group_id: str, tp: TopicPartition) -> int | None:
        """One OffsetFetch of `tp`: the previous offset while the last commit still lags."""
        key = (group_id, tp)
        if key in self._lagging:
            left = self._lagging[key]
            if left:
                self._lagging[key] = left - 1
            else:
                del self._lagging[key]
                self._shown.setdefault(group_id, {})[tp] = self._committed[group_id][tp]
        return self._shown.get(group_id, {}).get(tp)
