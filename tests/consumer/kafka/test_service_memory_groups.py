"""KafkaService against the in-memory Kafka: rebalances and exactly-once delivery."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from consumer.kafka.delivery import DeliveryFailedError
from consumer.testing import FakeFetcher, MemoryKafka, wait_until
from tests.consumer.kafka.conftest import StartMember
from tests.consumer.kafka.test_service_memory import IN, OUT, P0, P1, publish, results

EOS = {"processing_guarantee": "exactly_once"}


def ids_on(kafka: MemoryKafka, read_committed: bool = True) -> list[str]:
    return [r.key.decode() for r in kafka.records(OUT, read_committed) if r.key is not None]


async def test_revoked_partitions_drain_then_commit_then_are_forgotten(
    kafka: MemoryKafka, fetcher: FakeFetcher, start_member: StartMember
) -> None:
    fetcher.hold("http://img.test/slow")
    publish(kafka, "p1-a", partition=1)
    publish(kafka, "p1-slow", "slow", partition=1)
    publish(kafka, "p0-a", partition=0)
    first = await start_member()
    await wait_until(lambda: first.owned == {P0, P1}, 5, "the first assignment")
    await wait_until(lambda: len(results(kafka)) == 2, 5, "two results")

    second = await start_member()
    # The first member's revoke handler waits for the slow record of partition 1...
    polls = second.consumer.polls
    await wait_until(lambda: second.consumer.polls >= polls + 2, 5, "the second member polling")
    assert second.owned == frozenset()  # the group waits for the first member's handler
    fetcher.release()
    # ...which finishes, is committed, and only then is the partition handed over.
    await wait_until(lambda: second.owned == {P1}, 5, "the handover")
    assert first.owned == {P0}
    assert kafka.committed("birdwatch") == {P0: 1, P1: 2}
    assert sorted(ids_on(kafka)) == ["p0-a", "p1-a", "p1-slow"]  # none redone
    assert first.service.delivery.tracker.unfinished() == 0
    assert first.sample("birdwatch_rebalances_total") == 2
    assert second.sample("birdwatch_rebalances_total") == 1

    publish(kafka, "p1-b", partition=1)
    await wait_until(lambda: "p1-b" in ids_on(kafka), 5, "the new owner's result")
    assert second.sample("birdwatch_records_consumed_total") == 1


async def test_work_unfinished_at_the_revoke_timeout_is_left_to_the_next_owner(
    kafka: MemoryKafka, fetcher: FakeFetcher, start_member: StartMember
) -> None:
    fetcher.hold("http://img.test/stuck")
    publish(kafka, "p1-a", partition=1)
    publish(kafka, "p1-stuck", "stuck", partition=1)
    publish(kafka, "p1-c", partition=1)
    first = await start_member(revoke_timeout_s=0.3)
    await wait_until(lambda: len(results(kafka)) == 2, 5, "the two quick results")

    second = await start_member()
    await wait_until(lambda: second.owned == {P1}, 5, "the handover after the timeout")
    # What was done is committed: the prefix before the stuck record.
    assert kafka.committed("birdwatch")[P1] == 1
    # The first member forgot the partition, so its late result is never produced...
    assert first.service.delivery.tracker.unfinished() == 0
    fetcher.release()
    # ...while the new owner redoes the stuck record and the one after it.
    await wait_until(lambda: kafka.committed("birdwatch").get(P1) == 3, 5, "the new owner")
    await first.stop()
    assert sorted(ids_on(kafka)) == ["p1-a", "p1-c", "p1-c", "p1-stuck"]
    assert second.sample("birdwatch_records_consumed_total") == 2


async def test_exactly_once_commits_results_and_offsets_in_one_transaction_per_step(
    kafka: MemoryKafka, fetcher: FakeFetcher, start_member: StartMember
) -> None:
    for i in range(6):
        fetcher.hold(f"http://img.test/e{i}")
        publish(kafka, f"e{i}", f"e{i}", partition=i % 2)
    member = await start_member(**EOS, max_batch_size=6, max_batch_delay_ms=10_000)
    await wait_until(lambda: len(fetcher.calls) == 6, 5, "six fetches")
    assert not any(t.records for t in kafka.transactions)
    fetcher.release()  # one batch of six: one step
    await wait_until(lambda: kafka.committed("birdwatch") == {P0: 3, P1: 3}, 5, "the commit")

    [txn] = [t for t in kafka.transactions if t.records]
    assert txn.state == "committed"
    assert len(txn.records) == 6
    assert txn.offsets == {P0: 3, P1: 3}
    assert all(c.transactional for c in kafka.commits)  # no plain consumer commit
    assert sorted(ids_on(kafka)) == [f"e{i}" for i in range(6)]
    assert member.sample("birdwatch_results_produced_total", status="ok") == 6
    await member.stop()


async def test_a_fenced_exactly_once_member_stops_and_fails(
    kafka: MemoryKafka, start_member: StartMember
) -> None:
    publish(kafka, "before", partition=0)
    member = await start_member(**EOS)
    await wait_until(lambda: kafka.committed("birdwatch") == {P0: 1}, 5, "the first commit")
    assert member.producer.transactional_id is not None
    kafka.fence(member.producer.transactional_id)  # a newer member with our id started

    publish(kafka, "after", partition=0)
    await wait_until(lambda: member.task is not None and member.task.done(), 5, "the exit")
    with pytest.raises(DeliveryFailedError):
        await member.stop()
    assert member.service.state.failed
    assert not member.service.state.running
    assert member.consumer.stopped
    # The fenced producer's transaction was aborted (its sends were refused) and its offsets
    # not committed, so the next owner redoes the record.
    assert kafka.transactions[-1].state == "aborted"
    assert ids_on(kafka, read_committed=False) == ["before"]
    assert kafka.committed("birdwatch") == {P0: 1}


async def test_a_member_stopping_hands_its_partitions_to_the_others(
    kafka: MemoryKafka, start_member: StartMember
) -> None:
    first = await start_member()
    second = await start_member()
    await wait_until(lambda: first.owned == {P0} and second.owned == {P1}, 5, "a split")
    await first.stop()
    await wait_until(lambda: second.owned == {P0, P1}, 5, "the whole topic")
    publish(kafka, "x", partition=0)
    await wait_until(lambda: ids_on(kafka) == ["x"], 5, "the result")
    assert kafka.committed("birdwatch") == {TopicPartition(IN, 0): 1}
