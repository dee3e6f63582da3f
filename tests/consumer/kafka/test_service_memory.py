"""KafkaService's logic against the in-memory Kafka: intake, DLQ routing, backpressure,
rebalances and shutdown, in milliseconds. The same behaviours against a real broker are the
integration tests (tests/consumer/test_service_kafka.py and the fault tests)."""

from __future__ import annotations

import orjson
from aiokafka import TopicPartition

from consumer.kafka.outcomes import DLQ_CODE_HEADER, DLQ_REASON_HEADER, DLQ_SOURCE_HEADER
from consumer.testing import FakeFetcher, MemoryKafka, wait_until
from tests.consumer.kafka.conftest import StartMember

IN, OUT, DLQ = "bird-images", "bird-predictions", "bird-images.dlq"
P0, P1 = TopicPartition(IN, 0), TopicPartition(IN, 1)


def publish(kafka: MemoryKafka, event_id: str, name: str = "cls1", partition: int = 0) -> int:
    """An ImageEvent whose image is `http://img.test/<name>`; returns its offset."""
    value = orjson.dumps({"id": event_id, "url": f"http://img.test/{name}"})
    return kafka.append(IN, value, event_id.encode(), partition=partition)[1]


def results(kafka: MemoryKafka) -> dict[str, dict[str, object]]:
    return {r["id"]: r for r in map(orjson.loads, kafka.values(OUT))}


async def test_every_record_gets_one_result_and_its_offset_is_committed(
    kafka: MemoryKafka, start_member: StartMember
) -> None:
    for i in range(6):
        publish(kafka, f"e{i}", f"cls{i % 4}", partition=i % 2)
    member = await start_member()
    await wait_until(lambda: kafka.committed("birdwatch") == {P0: 3, P1: 3}, 5, "the commits")
    got = results(kafka)
    assert sorted(got) == [f"e{i}" for i in range(6)]
    assert [p["label_id"] for p in got["e3"]["predictions"]] == [3, 4, 5]  # type: ignore[union-attr]
    assert member.sample("birdwatch_records_consumed_total") == 6
    assert member.sample("birdwatch_results_produced_total", status="ok") == 6
    assert member.service.state.ready
    await member.stop()
    assert not member.service.state.running
    assert member.consumer.stopped
    assert member.producer.stopped


async def test_unparseable_records_go_to_the_dlq_and_bad_events_get_an_error_result(
    kafka: MemoryKafka, start_member: StartMember
) -> None:
    kafka.append(IN, b"not json at all", b"k", partition=0)
    kafka.append(IN, orjson.dumps({"id": "no-url"}), partition=0)
    publish(kafka, "good", partition=0)
    member = await start_member()
    await wait_until(lambda: kafka.committed("birdwatch").get(P0) == 3, 5, "the commit")

    [dead] = kafka.records(DLQ)
    assert dead.value == b"not json at all"
    assert dead.key == b"k"
    headers = dict(dead.headers)
    assert headers[DLQ_CODE_HEADER] == b"invalid_event"
    assert headers[DLQ_SOURCE_HEADER] == f"{IN}/0/0".encode()
    assert headers[DLQ_REASON_HEADER]
    got = results(kafka)
    assert got["no-url"]["status"] == "error"
    assert got["no-url"]["error"]["code"] == "invalid_event"  # type: ignore[index]
    assert got["good"]["status"] == "ok"
    assert member.sample("birdwatch_dlq_records_total") == 1
    assert member.sample("birdwatch_results_produced_total", status="error") == 1


async def test_only_the_contiguous_prefix_of_finished_records_is_committed(
    kafka: MemoryKafka, fetcher: FakeFetcher, start_member: StartMember
) -> None:
    fetcher.hold("http://img.test/slow")
    publish(kafka, "a", partition=0)
    publish(kafka, "slow", "slow", partition=0)
    for name in "cde":
        publish(kafka, name, partition=0)
    member = await start_member()
    await wait_until(lambda: set(results(kafka)) == {"a", "c", "d", "e"}, 5, "four results")
    await wait_until(lambda: len(kafka.commits) >= 1, 5, "a commit")
    # Offsets 2-4 are done, but offset 1 is not: nothing past it is committed.
    assert kafka.committed("birdwatch") == {P0: 1}
    assert all(c.offsets[P0] <= 1 for c in kafka.commits)
    fetcher.release()
    await wait_until(lambda: kafka.committed("birdwatch") == {P0: 5}, 5, "the whole partition")
    assert member.sample("birdwatch_results_produced_total", status="ok") == 5


async def test_intake_pauses_at_the_in_flight_bound_and_resumes_at_half(
    kafka: MemoryKafka, fetcher: FakeFetcher, start_member: StartMember
) -> None:
    for i in range(10):
        fetcher.hold(f"http://img.test/held-{i}")
        publish(kafka, f"e{i}", f"held-{i}", partition=i % 2)
    member = await start_member(max_in_flight=4)
    await wait_until(lambda: member.consumer.paused() == {P0, P1}, 5, "intake paused")
    assert member.sample("birdwatch_intake_paused") == 1
    polls = member.consumer.polls
    await wait_until(lambda: member.consumer.polls >= polls + 3, 5, "more polls while paused")
    # Never more than the bound was taken while paused.
    assert member.sample("birdwatch_records_consumed_total") == 4
    assert member.sample("birdwatch_records_in_flight") == 4
    taken = list(fetcher.calls)

    fetcher.release(taken[0])  # 3 in flight: above half of 4, still paused
    await wait_until(lambda: len(results(kafka)) == 1, 5, "the first result")
    polls = member.consumer.polls
    await wait_until(lambda: member.consumer.polls >= polls + 3, 5, "more polls")
    assert member.consumer.paused() == {P0, P1}
    assert member.sample("birdwatch_records_consumed_total") == 4

    fetcher.release(taken[1])  # 2 in flight: half, intake resumes up to the bound again
    await wait_until(
        lambda: member.sample("birdwatch_records_consumed_total") == 6, 5, "two more records"
    )
    await wait_until(lambda: member.consumer.paused() == {P0, P1}, 5, "paused again")
    polls = member.consumer.polls
    await wait_until(lambda: member.consumer.polls >= polls + 3, 5, "more polls")
    assert member.sample("birdwatch_records_consumed_total") == 6
    fetcher.release()
    await wait_until(lambda: len(results(kafka)) == 10, 5, "every result")
