"""The service's part in handovers, on the kit's Kafka in memory (no broker) with a fake
group coordinator: the order of a graceful stop (drain, commit, offsets visible, leave,
close), readiness through joins, rebalances and the stop, and the client settings that make
members react within a second.

Records are unparseable, so each becomes a dead-letter outcome: the delivery and commit path
without images or a model."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import stamina
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from consumer.config import Settings
from consumer.kafka.clients import KafkaClients
from consumer.kafka.membership import MemberIdentity
from consumer.kafka.service import KafkaService, ServiceState
from consumer.metrics import Metrics
from consumer.model import LoadedModel
from consumer.runtime import Runtime
from consumer.testing.memory_kafka import MemoryKafka, memory_clients
from consumer.testing.waiting import wait_until
from tests.consumer.kafka.fakes import FakeCoordinator

TOPIC = "images"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
MEMBER = MemberIdentity("grp", "member-1", generation=1, instance_id="pod-a")
SettingsFactory = Callable[..., Settings]


@pytest.fixture(autouse=True)
def _no_retry_waits() -> None:
    stamina.set_testing(True, attempts=1000, cap=True)


def cluster(partitions: int = 2, **options: int) -> MemoryKafka:
    kafka = MemoryKafka(**options)
    kafka.create_topic(TOPIC, partitions)
    return kafka


def clients(kafka: MemoryKafka, coordinator: FakeCoordinator | None = None) -> KafkaClients:
    """The kit's clients, with a coordinator that writes its leave to `kafka.journal`."""
    coordinator = coordinator or FakeCoordinator(MEMBER)
    coordinator.journal = kafka.journal
    return dataclasses.replace(memory_clients(kafka), group_session=lambda _: coordinator)


def publish(kafka: MemoryKafka, records: dict[TopicPartition, list[bytes]]) -> None:
    for tp, values in records.items():
        for value in values:
            kafka.append(tp.topic, value, partition=tp.partition)


def journal(kafka: MemoryKafka) -> list[str]:
    """The cluster's journal as "commit 0:5,1:3", "read 0", "leave"... (one topic here)."""
    shown = []
    for event in kafka.journal:
        parts = ",".join(f"{tp.partition}:{o}" for tp, o in sorted(event.offsets.items()))
        if event.partition is not None:
            parts = str(event.partition.partition)
        shown.append(f"{event.kind} {parts}" if parts else event.kind)
    return shown


@asynccontextmanager
async def running(
    settings: Settings, kafka: MemoryKafka, coordinator: FakeCoordinator | None = None
) -> AsyncIterator[tuple[KafkaService, asyncio.Event, asyncio.Task[None]]]:
    """A started service on `kafka`, joined, running until the stop event is set."""
    async with Runtime(settings, progress=False) as runtime:
        model = LoadedModel("fake-model", object(), [], 0.0, 0.0, 0, True)  # type: ignore[arg-type]
        state = ServiceState(model_loaded=True)
        member_clients = clients(kafka, coordinator)
        service = KafkaService(settings, runtime, model, Metrics(), state, member_clients)
        assert not state.ready
        await service.start()
        await kafka.group(settings.group_id).settled()  # joined in the background, as aiokafka
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            yield service, stop, task
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


def bad_records(count: int) -> list[bytes]:
    return [b"not an event %d" % i for i in range(count)]


def settings_for(make_settings: SettingsFactory, **overrides: object) -> Settings:
    return make_settings(input_topic=TOPIC, instance_id="pod-a", **overrides)


def after(journal: list[str], first: str, then: str) -> bool:
    """Whether the last `first` entry comes before the first `then` entry."""
    firsts = [i for i, entry in enumerate(journal) if entry.startswith(first)]
    thens = [i for i, entry in enumerate(journal) if entry.startswith(then)]
    return bool(firsts) and bool(thens) and firsts[-1] < thens[0]


async def test_a_graceful_stop_drains_commits_then_leaves_then_closes(
    make_settings: SettingsFactory,
) -> None:
    kafka = cluster()
    kafka.hold_acks()
    publish(kafka, {P0: bad_records(5), P1: bad_records(3)})
    settings = settings_for(make_settings, commit_interval_ms=10_000)
    async with running(settings, kafka) as (service, stop, task):
        await wait_until(lambda: service.delivery.tracker.unfinished() == 8, 5, "all in flight")
        assert service.state.ready
        stop.set()
        await wait_until(lambda: not service.state.ready, 1, "readiness off", step=0.01)
        assert "leave" not in journal(kafka)  # off from the start of the drain
        kafka.release_acks()
        await asyncio.wait_for(task, 10)
    entries = journal(kafka)
    # The acks (held until the drain began) were awaited: the last commit covers every record.
    assert "commit 0:5,1:3" in entries
    assert after(entries, "commit", "coordination.stop")
    assert after(entries, "coordination.stop", "leave")
    assert after(entries, "leave", "producer.stop")
    assert after(entries, "leave", "consumer.stop")
    assert not any(entry.startswith("read") for entry in entries)  # at-least-once: no wait
    assert not service.state.ready
    assert not service.state.joined


async def test_exactly_once_waits_until_its_last_offsets_show_before_leaving(
    make_settings: SettingsFactory,
) -> None:
    kafka = cluster(transactional_offsets_lag_reads=2)
    publish(kafka, {P0: bad_records(4), P1: bad_records(2)})
    settings = settings_for(
        make_settings, processing_guarantee="exactly_once", commit_interval_ms=10_000
    )
    async with running(settings, kafka) as (service, stop, task):
        await wait_until(lambda: service.delivery.pending() == 6, 5, "all outcomes ready")
        stop.set()
        await asyncio.wait_for(task, 10)
    entries = journal(kafka)
    assert "transaction.offsets 0:4,1:2" in entries
    assert after(entries, "transaction.commit", "read")
    # Two stale reads per partition, then the committed offsets: three reads each.
    assert entries.count("read 0") == 3
    assert entries.count("read 1") == 3
    assert after(entries, "read", "leave")
    assert kafka.offsets.shown(settings.group_id) == {P0: 4, P1: 2}


async def test_a_failed_leave_still_closes_the_member(make_settings: SettingsFactory) -> None:
    kafka = cluster(partitions=1)
    failing = FakeCoordinator(MEMBER, codes=[KafkaConnectionError("broker gone")] * 10)
    publish(kafka, {P0: bad_records(2)})
    async with running(settings_for(make_settings), kafka, failing) as (_, stop, task):
        await wait_until(lambda: "commit 0:2" in journal(kafka), 5, "the records committed")
        stop.set()
        await asyncio.wait_for(task, 10)
    entries = journal(kafka)
    assert "leave" in entries
    assert after(entries, "leave", "consumer.stop")
    assert "producer.stop" in entries


async def test_readiness_is_off_from_a_revoke_until_the_next_assignment(
    make_settings: SettingsFactory,
) -> None:
    kafka = cluster()
    settings = settings_for(make_settings)
    async with running(settings, kafka) as (service, _, _):
        assert service.state.ready
        kafka.hold_acks()
        publish(kafka, {P0: bad_records(3)})
        await wait_until(lambda: service.delivery.tracker.unfinished() == 3, 5, "in flight")
        only_p1 = {service.consumer: {P1}}
        rebalance = asyncio.create_task(kafka.rebalance(settings.group_id, only_p1))  # type: ignore[dict-item]
        await wait_until(lambda: not service.state.ready, 5, "readiness off in the revoke")
        await asyncio.sleep(0.1)  # time for a revoke that did not wait to finish
        assert not rebalance.done()  # the revoke waits for the acks (held)
        kafka.release_acks()
        await asyncio.wait_for(rebalance, 5)
        assert service.state.ready
        assert service.owned == {P1}
        assert "commit 0:3" in journal(kafka)  # drained and committed before giving P0 up


async def test_an_exactly_once_revoke_hands_over_only_visible_offsets(
    make_settings: SettingsFactory,
) -> None:
    kafka = cluster(transactional_offsets_lag_reads=3)
    settings = settings_for(
        make_settings, processing_guarantee="exactly_once", commit_interval_ms=10_000
    )
    async with running(settings, kafka) as (service, _, _):
        publish(kafka, {P0: bad_records(2)})
        await wait_until(lambda: service.delivery.pending() == 2, 5, "outcomes ready")
        await kafka.rebalance(settings.group_id, {service.consumer: {P1}})  # type: ignore[dict-item]
        entries = journal(kafka)
        assert entries.count("read 0") == 4
        assert after(entries, "transaction.commit", "read 0")
        assert kafka.offsets.shown(settings.group_id)[P0] == 2


async def test_a_member_stopped_before_it_ran_leaves_too(make_settings: SettingsFactory) -> None:
    kafka = cluster(partitions=1)
    settings = settings_for(make_settings)
    async with Runtime(settings, progress=False) as runtime:
        model = LoadedModel("fake-model", object(), [], 0.0, 0.0, 0, True)  # type: ignore[arg-type]
        state = ServiceState(model_loaded=True)
        service = KafkaService(settings, runtime, model, Metrics(), state, clients(kafka))
        await service.start()
        await kafka.group(settings.group_id).settled()
        assert state.ready
        await service.close()
    assert not state.ready
    assert after(journal(kafka), "leave", "consumer.stop")
    assert "producer.stop" in journal(kafka)


def test_members_heartbeat_every_second_whatever_the_session_timeout(
    make_settings: SettingsFactory,
) -> None:
    from consumer.kafka.clients import member_options

    options = member_options(settings_for(make_settings, session_timeout_ms=30_000))
    assert options["heartbeat_interval_ms"] == 1000
    assert options["session_timeout_ms"] == 30_000
    assert options["group_instance_id"] == "pod-a"
    tuned = member_options(settings_for(make_settings, heartbeat_interval_ms=300))
    assert tuned["heartbeat_interval_ms"] == 300
