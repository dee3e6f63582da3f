"""`MemoryConsumer`: a group member of `MemoryKafka` (the `GroupConsumer` protocol)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from consumer.testing.memory_kafka.cluster import MemoryKafka
from consumer.testing.memory_kafka.group import call_listener


class MemoryConsumer:
    """Takes aiokafka's keyword arguments (`group_id`, `isolation_level`, ...); ignores the
    ones about connections and timeouts."""

    def __init__(self, kafka: MemoryKafka, **options: Any) -> None:
        self.kafka = kafka
        self.options = options
        self.group_id: str = options["group_id"]
        self.read_committed = options.get("isolation_level") == "read_committed"
        self._topics: list[str] = []
        self._listener: ConsumerRebalanceListener | None = None
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._fetched: set[TopicPartition] = set()
        self._rebalancing = False
        self.started = False
        self.stopped = False
        self.polls = 0  # getmany calls so far

    # --- membership ----------------------------------------------------------------------

    def subscribe(self, topics: list[str], *, listener: ConsumerRebalanceListener) -> None:
        self._topics = list(topics)
        self._listener = listener

    @property
    def topics(self) -> list[str]:
        return self._topics

    async def start(self) -> None:
        self.started = True
        self.kafka.group(self.group_id).join(self)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.kafka.journal.record("consumer.stop")
        self.kafka.group(self.group_id).leave(self)
        self._assigned = set()

    async def revoke(self) -> None:
        if self.stopped:
            return
        # Fetching stops; the partitions stay assigned (and committable) until the new
        # assignment replaces them.
        self._rebalancing = True
        if self._listener is not None:
            await call_listener(self.group_id, self._listener.on_partitions_revoked, self._assigned)

    async def assign(self, partitions: set[TopicPartition], generation: int) -> None:
        if self.stopped:
            return
        # Where the group's offsets say to start, as an OffsetFetch reports them now.
        committed = self.kafka.offsets.shown(self.group_id)
        self._assigned = set(partitions)
        self._paused = set()  # a new assignment starts unpaused, as in aiokafka
        self._fetched &= self._assigned
        # auto_offset_reset="earliest": from the committed offset, else the beginning.
        self._positions = {tp: committed.get(tp, 0) for tp in partitions}
        self._rebalancing = False
        if self._listener is not None:
            await call_listener(self.group_id, self._listener.on_partitions_assigned, partitions)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    # --- reading -------------------------------------------------------------------------

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions) & self._assigned

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        self.polls += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            batch = self._fetch(set(partitions), max_records)
            left = deadline - loop.time()
            if batch or left <= 0 or self.stopped:
                return batch
            await self.kafka.changed(left)

    def _fetch(
        self, wanted: set[TopicPartition], max_records: int | None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        if self._rebalancing:
            return {}
        room = max_records if max_records is not None else 500
        out: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        for tp in sorted(self._assigned - self._paused, key=lambda t: (t.topic, t.partition)):
            if wanted and tp not in wanted:
                continue
            self._fetched.add(tp)
            if room <= 0:
                break
            records, position = self.kafka.read(tp, self._positions[tp], room, self.read_committed)
            self._positions[tp] = position
            if records:
                out[tp] = records
                room -= len(records)
        return out

    def highwater(self, partition: TopicPartition) -> int | None:
        """The partition's end as of the last fetch from it; None before one."""
        if partition not in self._fetched:
            return None
        return self.kafka.end_offset(partition)

    def position(self, partition: TopicPartition) -> int:
        if partition not in self._assigned:
            raise IllegalStateError(f"Partition {partition} is not assigned")
        return self._positions[partition]

    # --- offsets -------------------------------------------------------------------------

    async def committed(self, partition: TopicPartition) -> int | None:
        """An OffsetFetch: a transaction's offsets may show late (`MemoryKafka` docstring)."""
        self.kafka.journal.record("read", partition=partition)
        return self.kafka.offsets.fetch(self.group_id, partition)

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.stopped:
            raise CommitFailedError("the member left the group")
        for tp in offsets:
            if tp not in self._assigned:
                raise IllegalStateError(f"Partition {tp} is not assigned")
        fault = self.kafka.next_fault("commit")
        if fault is not None:
            raise fault
        plain = {tp: m.offset for tp, m in offsets.items()}
        self.kafka.journal.record("commit", plain)
        self.kafka.commit_offsets(self.group_id, plain)
