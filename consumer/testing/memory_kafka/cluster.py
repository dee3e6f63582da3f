"""The in-memory cluster: partitioned topics, committed offsets, transactions and the faults
a test injects. Consumers and producers (`MemoryConsumer`, `MemoryProducer`) talk to it, and
what they do is written, in order, to its `journal`.

It keeps what the adapter relies on (offsets per partition, read_committed visibility of
transactions, a group's committed offsets) and leaves out the rest (replication, retention).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from consumer.testing.memory_kafka.group import Group, Member
from consumer.testing.memory_kafka.journal import Journal
from consumer.testing.memory_kafka.offsets import Commit, GroupOffsets

TxnState = Literal["open", "committed", "aborted"]
Headers = list[tuple[str, bytes]]


@dataclass
class Transaction:
    """One transaction of a transactional producer, as the cluster saw it."""

    transactional_id: str
    records: list[tuple[TopicPartition, int]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    group_id: str | None = None
    state: TxnState = "open"


@dataclass
class StoredRecord:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int
    txn: Transaction | None = None

    def visible(self, read_committed: bool) -> bool:
        if self.txn is None or not read_committed:
            return True
        return self.txn.state == "committed"


class MemoryKafka:
    """A cluster in memory; topics are created on first use with `default_partitions`.
    Offsets committed in a transaction show to `MemoryConsumer.committed` only after
    `transactional_offsets_lag_reads` further reads of their partition (see offsets.py)."""

    def __init__(self, default_partitions: int = 1, transactional_offsets_lag_reads: int = 0):
        self.default_partitions = default_partitions
        self._logs: dict[str, list[list[StoredRecord]]] = {}
        self.offsets = GroupOffsets(transactional_offsets_lag_reads)
        self.journal = Journal()
        self._groups: dict[str, Group] = {}
        self._epochs: dict[str, int] = {}
        self._round_robin = 0
        self._changed = asyncio.Event()
        self.transactions: list[Transaction] = []
        self.send_attempts = 0
        # Faults: consumed one per operation, in order.
        self._send_faults: deque[Exception] = deque()
        self._commit_faults: deque[Exception] = deque()
        self._txn_faults: deque[Exception] = deque()
        self._held_acks: list[Callable[[], None]] | None = None
        # Topics' max.message.bytes, as DescribeConfigs reports it; unset: the broker's default.
        self.max_message_bytes: dict[str, int] = {}

    # --- topics --------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int) -> None:
        if name in self._logs:
            raise ValueError(f"topic {name} exists")
        self._logs[name] = [[] for _ in range(partitions)]

    def topic_names(self) -> list[str]:
        return sorted(self._logs)

    def partitions(self, topic: str) -> list[TopicPartition]:
        if topic not in self._logs:
            self.create_topic(topic, self.default_partitions)
        return [TopicPartition(topic, p) for p in range(len(self._logs[topic]))]

    def _log(self, tp: TopicPartition) -> list[StoredRecord]:
        self.partitions(tp.topic)
        return self._logs[tp.topic][tp.partition]

    def end_offset(self, tp: TopicPartition) -> int:
        """The high watermark: one past the last record written."""
        log = self._log(tp)
        return log[-1].offset + 1 if log else 0

    def stable_offset(self, tp: TopicPartition) -> int:
        """The last stable offset: nothing at or after it is readable under read_committed."""
        for record in self._log(tp):
            if record.txn is not None and record.txn.state == "open":
                return record.offset
        return self.end_offset(tp)

    def choose_partition(self, topic: str, key: bytes | None) -> int:
        """By a hash of the key (CRC-32 here, murmur2 in Kafka), else round-robin."""
        count = len(self.partitions(topic))
        if key is not None:
            return zlib.crc32(key) % count
        self._round_robin += 1
        return self._round_robin % count

    def append(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        headers: Headers | None = None,
        txn: Transaction | None = None,
    ) -> tuple[TopicPartition, int]:
        """Write one record (what a test's publisher does); returns where it went."""
        part = self.choose_partition(topic, key) if partition is None else partition
        tp = TopicPartition(topic, part)
        offset = self.end_offset(tp)
        now_ms = int(time.time() * 1000)
        self._log(tp).append(StoredRecord(offset, key, value, list(headers or []), now_ms, txn))
        self.notify()
        return tp, offset

    def read(
        self, tp: TopicPartition, start: int, limit: int, read_committed: bool
    ) -> tuple[list[ConsumerRecord[bytes, bytes]], int]:
        """Up to `limit` readable records from offset `start`, and the next position."""
        end = self.stable_offset(tp) if read_committed else self.end_offset(tp)
        out: list[ConsumerRecord[bytes, bytes]] = []
        position = start
        for record in self._log(tp)[start:end]:
            if len(out) >= limit:
                break
            position = record.offset + 1
            if record.visible(read_committed):
                out.append(_consumer_record(tp, record))
        return out, position

    def records(
        self, topic: str, read_committed: bool = True
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Every readable record of `topic`, partition by partition (a topic reader)."""
        out: list[ConsumerRecord[bytes, bytes]] = []
        for tp in self.partitions(topic):
            out.extend(self.read(tp, 0, len(self._log(tp)), read_committed)[0])
        return out

    def values(self, topic: str, read_committed: bool = True) -> list[bytes]:
        return [r.value for r in self.records(topic, read_committed) if r.value is not None]

    # --- groups and offsets --------------------------------------------------------------

    def group(self, group_id: str) -> Group:
        if group_id not in self._groups:
            self._groups[group_id] = Group(group_id, self)
        return self._groups[group_id]

    def committed(self, group_id: str) -> dict[TopicPartition, int]:
        """The group's committed offsets (a copy)."""
        return self.offsets.committed(group_id)

    @property
    def commits(self) -> list[Commit]:
        return self.offsets.commits

    def commit_offsets(
        self, group_id: str, offsets: dict[TopicPartition, int], transactional: bool = False
    ) -> None:
        self.offsets.commit(group_id, offsets, transactional)

    async def rebalance(
        self, group_id: str, assignment: Mapping[Member, set[TopicPartition]] | None = None
    ) -> None:
        """Make the group rebalance now (as a membership change would) and wait for it; with
        `assignment`, its members get these partitions (the others none) instead of a share."""
        await self.group(group_id).rebalance(assignment)

    # --- transactional ids -----------------------------------------------------------------

    def init_producer(self, transactional_id: str) -> int:
        """A producer starts with this id: a new epoch, which fences the older producers."""
        epoch = self._epochs.get(transactional_id, 0) + 1
        self._epochs[transactional_id] = epoch
        for txn in self.transactions:
            if txn.transactional_id == transactional_id and txn.state == "open":
                self.end_transaction(txn, commit=False)
        return epoch

    def fence(self, transactional_id: str) -> None:
        """What a newer producer with the same id does to the current one."""
        self.init_producer(transactional_id)

    def is_current(self, transactional_id: str, epoch: int) -> bool:
        return self._epochs.get(transactional_id) == epoch

    def begin_transaction(self, transactional_id: str) -> Transaction:
        txn = Transaction(transactional_id)
        self.transactions.append(txn)
        return txn

    def end_transaction(self, txn: Transaction, commit: bool) -> None:
        txn.state = "committed" if commit else "aborted"
        self.journal.record("transaction.commit" if commit else "transaction.abort")
        if commit and txn.group_id is not None and txn.offsets:
            self.commit_offsets(txn.group_id, txn.offsets, transactional=True)
        self.notify()

    # --- faults --------------------------------------------------------------------------

    def fail_sends(self, error: Exception, times: int = 1) -> None:
        """The next `times` produce requests fail with `error` (their records not written)."""
        self._send_faults.extend([error] * times)

    def fail_commits(self, error: Exception, times: int = 1) -> None:
        """The next `times` consumer commits fail with `error`."""
        self._commit_faults.extend([error] * times)

    def fail_transactions(self, error: Exception, times: int = 1) -> None:
        """The next `times` transaction commits fail with `error` (and are aborted)."""
        self._txn_faults.extend([error] * times)

    def hold_acks(self) -> None:
        """Records sent from now on are neither written nor acknowledged until `release_acks`
        (a slow broker)."""
        if self._held_acks is None:
            self._held_acks = []

    def release_acks(self) -> None:
        held, self._held_acks = self._held_acks or [], None
        for write in held:
            write()

    @property
    def held_acks(self) -> int:
        return len(self._held_acks or [])

    def when_acked(self, write: Callable[[], None]) -> None:
        """Write a non-transactional record now, or when acks are released."""
        if self._held_acks is None:
            write()
        else:
            self._held_acks.append(write)

    def next_fault(self, kind: Literal["send", "commit", "txn"]) -> Exception | None:
        queue = {"send": self._send_faults, "commit": self._commit_faults, "txn": self._txn_faults}
        return queue[kind].popleft() if queue[kind] else None

    # --- waiting for changes ---------------------------------------------------------------

    def notify(self) -> None:
        """Wake whoever waits for new records or a new assignment."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, timeout_s: float) -> None:
        """Return on the next change, or after `timeout_s`."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return


def _consumer_record(tp: TopicPartition, record: StoredRecord) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=record.offset,
        timestamp=record.timestamp_ms,
        timestamp_type=0,
        key=record.key,
        value=record.value,
        checksum=None,
        serialized_key_size=len(record.key or b""),
        serialized_value_size=len(record.value or b""),
        headers=tuple(record.headers),
    )


def partitions_of(kafka: MemoryKafka, topics: Iterable[str]) -> list[TopicPartition]:
    return [tp for topic in topics for tp in kafka.partitions(topic)]
