"""The in-memory Kafka behaves as the adapter expects of Kafka (the service tests rely on it)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalOperation,
    IllegalStateError,
    KafkaError,
    ProducerFenced,
    RequestTimedOutError,
)
from aiokafka.structs import OffsetAndMetadata

from consumer.testing import MemoryConsumer, MemoryKafka, MemoryProducer, memory_clients, settle

T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


class Listener:
    """Records the callbacks, as (kind, partitions)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, set[TopicPartition]]] = []
        self.fail = fail

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.calls.append(("revoked", set(revoked)))
        if self.fail:
            raise RuntimeError("listener bug")

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.calls.append(("assigned", set(assigned)))


async def join(kafka: MemoryKafka, listener: Listener, **options: object) -> MemoryConsumer:
    consumer = MemoryConsumer(kafka, group_id="g", **options)
    consumer.subscribe(["t"], listener=listener)
    await consumer.start()
    await kafka.group("g").settled()
    return consumer


def kafka_with_topic(partitions: int = 2) -> MemoryKafka:
    kafka = MemoryKafka()
    kafka.create_topic("t", partitions)
    return kafka


async def test_members_get_callbacks_as_aiokafka_calls_them() -> None:
    kafka = kafka_with_topic()
    first_calls, second_calls = Listener(), Listener()
    first = await join(kafka, first_calls)
    # The first join revokes nothing, then everything is assigned.
    assert first_calls.calls == [("revoked", set()), ("assigned", {T0, T1})]
    second = await join(kafka, second_calls)
    # Eager protocol: all of it revoked, then the new share assigned.
    assert first_calls.calls[2:] == [("revoked", {T0, T1}), ("assigned", {T0})]
    assert second_calls.calls == [("revoked", set()), ("assigned", {T1})]
    assert kafka.group("g").rebalances == 2
    await second.stop()
    await kafka.group("g").settled()
    # A member that leaves gets no callback; the others get its partitions.
    assert second_calls.calls == [("revoked", set()), ("assigned", {T1})]
    assert first.assignment() == {T0, T1}
    await second.stop()  # twice is fine


async def test_a_failing_listener_is_logged_not_raised() -> None:
    kafka = kafka_with_topic()
    consumer = await join(kafka, Listener(fail=True))
    await kafka.rebalance("g")
    assert consumer.assignment() == {T0, T1}


async def test_getmany_reads_from_the_committed_offset_within_max_records() -> None:
    kafka = kafka_with_topic()
    for i in range(5):
        kafka.append("t", f"v{i}".encode(), partition=0)
    kafka.commit_offsets("g", {T0: 2})
    consumer = await join(kafka, Listener())
    assert consumer.highwater(T0) is None  # nothing fetched yet
    assert consumer.position(T0) == 2
    batch = await consumer.getmany(timeout_ms=0, max_records=2)
    assert [r.value for r in batch[T0]] == [b"v2", b"v3"]
    assert consumer.highwater(T0) == 5
    batch = await consumer.getmany(T0, timeout_ms=0)
    assert [r.offset for r in batch[T0]] == [4]
    assert await consumer.getmany(timeout_ms=0) == {}
    assert await consumer.committed(T0) == 2
    with pytest.raises(IllegalStateError):
        consumer.position(TopicPartition("t", 9))


async def test_getmany_waits_for_new_records_and_skips_paused_partitions() -> None:
    kafka = kafka_with_topic()
    consumer = await join(kafka, Listener())
    consumer.pause(T0)
    assert consumer.paused() == {T0}
    waiting = asyncio.create_task(consumer.getmany(timeout_ms=5000))
    await settle()
    kafka.append("t", b"paused", partition=0)
    await settle()
    assert not waiting.done()
    kafka.append("t", b"live", partition=1)
    batch = await asyncio.wait_for(waiting, 5)
    assert list(batch) == [T1]
    consumer.resume(T0)
    batch = await consumer.getmany(timeout_ms=0)
    assert [r.value for r in batch[T0]] == [b"paused"]
    await kafka.rebalance("g")
    assert consumer.paused() == set()  # a new assignment starts unpaused


async def test_commits_need_the_partition_and_may_fail() -> None:
    kafka = kafka_with_topic()
    consumer = await join(kafka, Listener())
    with pytest.raises(IllegalStateError):
        await consumer.commit({TopicPartition("t", 7): OffsetAndMetadata(1, "")})
    kafka.fail_commits(RequestTimedOutError())
    with pytest.raises(RequestTimedOutError):
        await consumer.commit({T0: OffsetAndMetadata(1, "")})
    await consumer.commit({T0: OffsetAndMetadata(1, "")})
    assert kafka.committed("g") == {T0: 1}
    assert [c.offsets for c in kafka.commits] == [{T0: 1}]
    await consumer.stop()
    with pytest.raises(CommitFailedError):
        await consumer.commit({T0: OffsetAndMetadata(2, "")})


async def test_records_go_by_key_or_round_robin() -> None:
    kafka = MemoryKafka(default_partitions=3)
    keyed = {kafka.append("auto", b"v", b"same")[0] for _ in range(4)}
    assert len(keyed) == 1
    spread = {kafka.append("auto", b"v")[0] for _ in range(3)}
    assert len(spread) == 3
    with pytest.raises(ValueError, match="exists"):
        kafka.create_topic("auto", 1)


async def test_held_acks_write_nothing_until_released() -> None:
    kafka = MemoryKafka()
    producer = MemoryProducer(kafka)
    await producer.start()
    kafka.hold_acks()
    ack = await producer.send("out", b"v", key=b"k", headers=[("h", b"1")])
    assert kafka.held_acks == 1
    assert not ack.done()
    assert kafka.records("out") == []
    kafka.release_acks()
    metadata = await ack
    assert metadata.offset == 0
    [record] = kafka.records("out")
    assert record.headers == (("h", b"1"),)
    await producer.stop()
    with pytest.raises(KafkaError):
        await producer.send("out", b"v")


async def test_transactions_are_visible_to_read_committed_only_once_committed() -> None:
    kafka = MemoryKafka()
    producer = MemoryProducer(kafka, transactional_id="tid")
    await producer.start()
    with pytest.raises(IllegalOperation):
        await producer.send("out", b"outside")
    with pytest.raises(IllegalOperation):
        await producer.send_offsets_to_transaction({T0: OffsetAndMetadata(1, "")}, "g")
    async with producer.transaction():
        await producer.send("out", b"a")
        await producer.send_offsets_to_transaction({T0: OffsetAndMetadata(3, "")}, "g")
        assert kafka.records("out") == []  # open: behind the last stable offset
        assert len(kafka.records("out", read_committed=False)) == 1
        with pytest.raises(IllegalOperation):
            async with producer.transaction():
                pass
    assert kafka.values("out") == [b"a"]
    assert kafka.committed("g") == {T0: 3}

    async def fail_inside() -> None:
        async with producer.transaction():
            await producer.send("out", b"b")
            raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError):
        await fail_inside()
    assert kafka.values("out") == [b"a"]
    assert [t.state for t in kafka.transactions] == ["committed", "aborted"]

    plain = MemoryProducer(kafka)
    with pytest.raises(IllegalOperation):
        async with plain.transaction():
            pass


async def test_a_new_producer_with_the_same_id_fences_the_old_one() -> None:
    kafka = MemoryKafka()
    old = MemoryProducer(kafka, transactional_id="tid")
    await old.start()
    open_txn = old.transaction()
    await open_txn.__aenter__()
    await old.send("out", b"zombie")
    new = MemoryProducer(kafka, transactional_id="tid")
    await new.start()  # aborts the old producer's open transaction
    assert old.fenced
    assert not new.fenced
    ack = await old.send("out", b"late")
    with pytest.raises(ProducerFenced):
        await ack
    with pytest.raises(ProducerFenced):
        await old.send_offsets_to_transaction({T0: OffsetAndMetadata(1, "")}, "g")
    with pytest.raises(ProducerFenced):
        await open_txn.__aexit__(None, None, None)
    assert kafka.values("out") == []
    assert kafka.values("out", read_committed=False) == [b"zombie"]


def test_memory_clients_make_members_and_producers_of_the_cluster() -> None:
    kafka = MemoryKafka()
    clients = memory_clients(kafka)
    consumer = clients.consumer(group_id="g", isolation_level="read_committed")
    producer = clients.producer(transactional_id="x")
    assert isinstance(consumer, MemoryConsumer)
    assert consumer.read_committed
    assert isinstance(producer, MemoryProducer)
    assert producer.kafka is kafka
