"""The in-memory Kafka's journal (what its clients did, in order), offsets committed in a
transaction that show late, and rebalances to a given assignment."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from consumer.testing import MemoryConsumer, MemoryKafka, MemoryProducer
from consumer.testing.memory_kafka import Event, GroupOffsets

T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


class Listener:
    def __init__(self) -> None:
        self.assigned: list[set[TopicPartition]] = []

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned.append(set(assigned))


async def member(kafka: MemoryKafka, listener: Listener | None = None) -> MemoryConsumer:
    consumer = MemoryConsumer(kafka, group_id="g")
    consumer.subscribe(["t"], listener=listener or Listener())
    await consumer.start()
    await kafka.group("g").settled()
    return consumer


def cluster(**options: int) -> MemoryKafka:
    kafka = MemoryKafka(**options)
    kafka.create_topic("t", 2)
    return kafka


async def commit_in_a_transaction(kafka: MemoryKafka, offsets: dict[TopicPartition, int]) -> None:
    producer = MemoryProducer(kafka, transactional_id="tid")
    await producer.start()
    async with producer.transaction():
        await producer.send("out", b"result")
        await producer.send_offsets_to_transaction(
            {tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()}, "g"
        )
    await producer.stop()


async def test_the_journal_keeps_what_the_clients_did_in_order() -> None:
    kafka = cluster()
    consumer = await member(kafka)
    await consumer.commit({T0: OffsetAndMetadata(3, "")})
    await commit_in_a_transaction(kafka, {T1: 5})
    assert await consumer.committed(T1) == 5
    await consumer.stop()

    assert [str(event) for event in kafka.journal] == [
        "commit t-0:3",
        "transaction.offsets t-1:5",
        "transaction.commit",
        "producer.stop",
        "read t-1",
        "consumer.stop",
    ]
    assert kafka.journal[0] == Event("commit", {T0: 3})
    assert kafka.journal[4].partition == T1
    kafka.journal.record("leave")  # a test's own fake adds its steps in the same order
    assert kafka.journal.kinds()[-2:] == ["consumer.stop", "leave"]


async def test_an_aborted_transaction_is_journalled_and_commits_nothing() -> None:
    kafka = cluster()
    producer = MemoryProducer(kafka, transactional_id="tid")
    await producer.start()
    kafka.fail_transactions(RuntimeError("broker said no"))
    try:
        async with producer.transaction():
            await producer.send_offsets_to_transaction({T0: OffsetAndMetadata(2, "")}, "g")
    except RuntimeError:
        pass
    assert kafka.journal.kinds() == ["transaction.offsets", "transaction.abort"]
    assert kafka.committed("g") == {}


async def test_offsets_of_a_transaction_show_after_the_lagging_reads() -> None:
    kafka = cluster(transactional_offsets_lag_reads=2)
    consumer = await member(kafka)
    await consumer.commit({T0: OffsetAndMetadata(1, "")})
    await commit_in_a_transaction(kafka, {T0: 4, T1: 6})

    assert kafka.committed("g") == {T0: 4, T1: 6}  # what the group committed...
    assert kafka.offsets.shown("g") == {T0: 1}  # ...is not yet what it reports
    assert [await consumer.committed(T0) for _ in range(3)] == [1, 1, 4]
    assert [await consumer.committed(T1) for _ in range(3)] == [None, None, 6]
    assert kafka.offsets.shown("g") == {T0: 4, T1: 6}
    # A consumer's own commit shows at once, and ends the lag of its partition.
    await commit_in_a_transaction(kafka, {T0: 7})
    await consumer.commit({T0: OffsetAndMetadata(8, "")})
    assert await consumer.committed(T0) == 8


def test_without_a_lag_every_commit_shows_at_once() -> None:
    offsets = GroupOffsets()
    offsets.commit("g", {T0: 2}, transactional=True)
    assert offsets.shown("g") == {T0: 2}
    assert offsets.fetch("g", T0) == 2
    assert [c.transactional for c in offsets.commits] == [True]


async def test_a_rebalance_can_hand_out_a_given_assignment() -> None:
    kafka = cluster()
    first_calls, second_calls = Listener(), Listener()
    first = await member(kafka, first_calls)
    second = await member(kafka, second_calls)
    assert first.assignment() | second.assignment() == {T0, T1}

    await kafka.rebalance("g", {first: {T1}})

    assert first.assignment() == {T1}
    assert second.assignment() == set()
    assert (first_calls.assigned[-1], second_calls.assigned[-1]) == ({T1}, set())
    await kafka.rebalance("g")  # then shares again
    assert first.assignment() | second.assignment() == {T0, T1}
