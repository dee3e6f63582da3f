"""The cluster's journal: what its clients did, in order, so a test can check the order of a
handover (commit, then offsets visible, then leave, then close) rather than only its end."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass(frozen=True)
class Event:
    """One operation. The kit writes "commit" (a consumer's commit), "transaction.offsets"
    and "transaction.commit" / "transaction.abort", "read" (a committed-offset fetch, of
    `partition`), "consumer.stop" and "producer.stop"; a test's own fakes may add theirs
    (e.g. "leave")."""

    kind: str
    offsets: Mapping[TopicPartition, int] = field(default_factory=dict)
    partition: TopicPartition | None = None

    def __str__(self) -> str:
        if self.partition is not None:
            return f"{self.kind} {_name(self.partition)}"
        if self.offsets:
            shown = ",".join(f"{_name(tp)}:{o}" for tp, o in sorted(self.offsets.items()))
            return f"{self.kind} {shown}"
        return self.kind


class Journal(list[Event]):
    """The events so far, oldest first."""

    def record(
        self,
        kind: str,
        offsets: Mapping[TopicPartition, int] | None = None,
        partition: TopicPartition | None = None,
    ) -> None:
        self.append(Event(kind, dict(offsets or {}), partition))

    def kinds(self) -> list[str]:
        return [event.kind for event in self]


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}-{tp.partition}"
