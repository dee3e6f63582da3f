"""In-memory stand-ins for the aiokafka pieces `KafkaService` is given (`KafkaClients`): a
consumer with a scripted assignment, a producer whose acks come later, a group whose committed
offsets may show late (as while transaction markers are being written), and a group session.
Every call that matters for the order of a handover is written to one shared `journal`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from consumer.kafka.clients import GroupConsumer, KafkaClients, Producer
from consumer.kafka.leave_group import LeaveGroupResponse_v5
from consumer.kafka.membership import GroupSession, MemberIdentity

Journal = list[str]


@dataclass
class FakeGroup:
    """The group's committed offsets as the coordinator reports them; offsets committed in a
    transaction show only after `stale_reads` further reads."""

    journal: Journal
    stale_reads: int = 0
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    _pending: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)

    def commit(self, offsets: dict[TopicPartition, int], transactional: bool) -> None:
        for tp, offset in offsets.items():
            if transactional and self.stale_reads:
                self._pending[tp] = (offset, self.stale_reads)
            else:
                self.committed[tp] = offset

    def read(self, tp: TopicPartition) -> int | None:
        if tp in self._pending:
            offset, stale = self._pending[tp]
            if stale == 0:
                del self._pending[tp]
                self.committed[tp] = offset
            else:
                self._pending[tp] = (offset, stale - 1)
        return self.committed.get(tp)


@dataclass
class FakeConsumer:
    """Assigns `partitions` on start and hands out `records` (value only) once each."""

    group: FakeGroup
    partitions: set[TopicPartition]
    records: dict[TopicPartition, list[bytes]] = field(default_factory=dict)
    listener: ConsumerRebalanceListener | None = None
    paused: set[TopicPartition] = field(default_factory=set)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def journal(self) -> Journal:
        return self.group.journal

    def subscribe(self, topics: list[str], *, listener: ConsumerRebalanceListener) -> None:
        self.listener = listener

    async def start(self) -> None:
        assert self.listener is not None
        await self.listener.on_partitions_revoked(set())
        await self.listener.on_partitions_assigned(set(self.partitions))

    async def stop(self) -> None:
        self.journal.append("consumer.stop")

    async def rebalance(self, partitions: set[TopicPartition]) -> None:
        """An eager rebalance: everything revoked, then `partitions` assigned."""
        assert self.listener is not None
        await self.listener.on_partitions_revoked(set(self.partitions))
        self.partitions = set(partitions)
        await self.listener.on_partitions_assigned(set(partitions))

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        out: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        for tp in self.partitions - self.paused:
            values = self.records.pop(tp, [])
            if values:
                out[tp] = [_record(tp, offset, value) for offset, value in enumerate(values)]
        if not out:
            await asyncio.sleep(min(timeout_ms, 20) / 1000)
        return out

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused -= set(partitions)

    def assignment(self) -> set[TopicPartition]:
        return set(self.partitions)

    def highwater(self, partition: TopicPartition) -> int | None:
        return None

    async def committed(self, partition: TopicPartition) -> int | None:
        self.journal.append(f"read {partition.partition}")
        return self.group.read(partition)

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        plain = {tp: meta.offset for tp, meta in offsets.items()}
        self.journal.append(f"commit {_show(plain)}")
        self.group.commit(plain, transactional=False)


@dataclass
class FakeProducer:
    """Acknowledges each record `ack_delay_s` after it is sent; transactions commit at once."""

    group: FakeGroup
    ack_delay_s: float = 0.0
    sent: list[bytes | None] = field(default_factory=list)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.group.journal.append("producer.stop")

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(self.ack_delay_s, _resolve, ack)
        self.sent.append(value)
        return ack

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        yield
        self.group.journal.append("transaction.commit")

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._transaction()

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], group_id: str
    ) -> None:
        plain = {tp: meta.offset for tp, meta in offsets.items()}
        self.group.journal.append(f"transaction.offsets {_show(plain)}")
        self.group.commit(plain, transactional=True)


@dataclass
class FakeGroupSession:
    """A static member whose coordinator answers LeaveGroup v5 (or fails with `error`)."""

    journal: Journal
    error: Exception | None = None

    def identity(self) -> MemberIdentity | None:
        return MemberIdentity("grp", "member-1", generation=1, instance_id="pod-a")

    async def stop_coordination(self) -> None:
        self.journal.append("coordination.stop")

    async def send_to_coordinator(self, request: Any) -> Any:
        self.journal.append("leave")
        if self.error is not None:
            raise self.error
        request.prepare({13: (0, 5)})
        return LeaveGroupResponse_v5(0, 0, [("member-1", "pod-a", 0, {})], {})


class FakeAdmin:
    """A broker that does not tell its topics' limits: the producer's own then apply."""

    async def start(self) -> None:
        raise KafkaConnectionError("no DescribeConfigs in the fakes")

    async def close(self) -> None:
        pass

    async def describe_configs(
        self, config_resources: list[Any], include_synonyms: bool = False
    ) -> list[Any]:
        return []

    async def list_topics(self) -> list[str]:
        return []


@dataclass
class FakeKafka:
    """One member's fakes, and the `KafkaClients` that hand them to the service."""

    partitions: set[TopicPartition]
    ack_delay_s: float = 0.0
    stale_reads: int = 0
    leave_error: Exception | None = None
    journal: Journal = field(default_factory=list)

    def __post_init__(self) -> None:
        self.group = FakeGroup(self.journal, self.stale_reads)
        self.consumer = FakeConsumer(self.group, set(self.partitions))
        self.producer = FakeProducer(self.group, self.ack_delay_s)
        self.session = FakeGroupSession(self.journal, self.leave_error)

    def clients(self) -> KafkaClients:
        def consumer(**options: Any) -> GroupConsumer:
            self.consumer.options = options
            return self.consumer

        def producer(**options: Any) -> Producer:
            return self.producer

        def session(_: GroupConsumer) -> GroupSession:
            return self.session

        return KafkaClients(
            consumer=consumer,
            producer=producer,
            group_session=session,
            admin=lambda **_: FakeAdmin(),
        )


def _record(tp: TopicPartition, offset: int, value: bytes) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=[],
    )


def _resolve(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


def _show(offsets: dict[TopicPartition, int]) -> str:
    return ",".join(f"{tp.partition}:{o}" for tp, o in sorted(offsets.items()))
