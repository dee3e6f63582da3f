"""The service's part in handovers, against in-memory clients (no broker): the order of a
graceful stop (drain, commit, offsets visible, leave, close), readiness through joins,
rebalances and the stop, and the client settings that make members react within a second.

Records are unparseable, so each becomes a dead-letter outcome: the delivery and commit path
without images or a model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import stamina
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from consumer.config import Settings
from consumer.kafka.service import KafkaService, ServiceState
from consumer.metrics import Metrics
from consumer.model import LoadedModel
from consumer.runtime import Runtime
from consumer.testing.waiting import wait_until
from tests.consumer.kafka.fakes import FakeKafka

TOPIC = "images"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
SettingsFactory = Callable[..., Settings]


@pytest.fixture(autouse=True)
def _no_retry_waits() -> None:
    stamina.set_testing(True, attempts=1000, cap=True)


@asynccontextmanager
async def running(
    settings: Settings, kafka: FakeKafka
) -> AsyncIterator[tuple[KafkaService, asyncio.Event, asyncio.Task[None]]]:
    """A started service on `kafka`'s fakes, running until the stop event is set."""
    async with Runtime(settings, progress=False) as runtime:
        model = LoadedModel("fake-model", object(), [], 0.0, 0.0, 0, True)  # type: ignore[arg-type]
        state = ServiceState(model_loaded=True)
        service = KafkaService(settings, runtime, model, Metrics(), state, kafka.clients())
        assert not state.ready
        await service.start()
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
    kafka = FakeKafka({P0, P1}, ack_delay_s=0.3)
    kafka.consumer.records = {P0: bad_records(5), P1: bad_records(3)}
    settings = settings_for(make_settings, commit_interval_ms=10_000)
    async with running(settings, kafka) as (service, stop, task):
        await wait_until(lambda: service.delivery.tracker.unfinished() == 8, 5, "all in flight")
        assert service.state.ready
        stop.set()
        await wait_until(lambda: not service.state.ready, 1, "readiness off", step=0.01)
        assert "leave" not in kafka.journal  # off from the start of the drain
        await asyncio.wait_for(task, 10)
    journal = kafka.journal
    # The acks (0.3 s late) were awaited: the last commit covers every record.
    assert "commit 0:5,1:3" in journal
    assert after(journal, "commit", "coordination.stop")
    assert after(journal, "coordination.stop", "leave")
    assert after(journal, "leave", "producer.stop")
    assert after(journal, "leave", "consumer.stop")
    assert not any(entry.startswith("read") for entry in journal)  # at-least-once: no wait
    assert not service.state.ready
    assert not service.state.joined


async def test_exactly_once_waits_until_its_last_offsets_show_before_leaving(
    make_settings: SettingsFactory,
) -> None:
    kafka = FakeKafka({P0, P1}, stale_reads=2)
    kafka.consumer.records = {P0: bad_records(4), P1: bad_records(2)}
    settings = settings_for(
        make_settings, processing_guarantee="exactly_once", commit_interval_ms=10_000
    )
    async with running(settings, kafka) as (service, stop, task):
        await wait_until(lambda: service.delivery.pending() == 6, 5, "all outcomes ready")
        stop.set()
        await asyncio.wait_for(task, 10)
    journal = kafka.journal
    assert "transaction.offsets 0:4,1:2" in journal
    assert after(journal, "transaction.commit", "read")
    # Two stale reads per partition, then the committed offsets: three reads each.
    assert journal.count("read 0") == 3
    assert journal.count("read 1") == 3
    assert after(journal, "read", "leave")
    assert kafka.group.committed == {P0: 4, P1: 2}


async def test_a_failed_leave_still_closes_the_member(make_settings: SettingsFactory) -> None:
    kafka = FakeKafka({P0}, leave_error=KafkaConnectionError("broker gone"))
    kafka.consumer.records = {P0: bad_records(2)}
    async with running(settings_for(make_settings), kafka) as (_, stop, task):
        await wait_until(lambda: "commit 0:2" in kafka.journal, 5, "the records committed")
        stop.set()
        await asyncio.wait_for(task, 10)
    assert "leave" in kafka.journal
    assert after(kafka.journal, "leave", "consumer.stop")
    assert "producer.stop" in kafka.journal


async def test_readiness_is_off_from_a_revoke_until_the_next_assignment(
    make_settings: SettingsFactory,
) -> None:
    kafka = FakeKafka({P0, P1}, ack_delay_s=0.5)
    async with running(settings_for(make_settings), kafka) as (service, _, _):
        assert service.state.ready
        kafka.consumer.records = {P0: bad_records(3)}
        await wait_until(lambda: service.delivery.tracker.unfinished() == 3, 5, "in flight")
        rebalance = asyncio.create_task(kafka.consumer.rebalance({P1}))
        await wait_until(lambda: not service.state.ready, 5, "readiness off in the revoke")
        assert not rebalance.done()  # the revoke waits for the acks (0.5 s)
        await asyncio.wait_for(rebalance, 5)
        assert service.state.ready
        assert service.owned == {P1}
        assert "commit 0:3" in kafka.journal  # drained and committed before giving P0 up


async def test_an_exactly_once_revoke_hands_over_only_visible_offsets(
    make_settings: SettingsFactory,
) -> None:
    kafka = FakeKafka({P0, P1}, stale_reads=3)
    settings = settings_for(
        make_settings, processing_guarantee="exactly_once", commit_interval_ms=10_000
    )
    async with running(settings, kafka) as (service, _, _):
        kafka.consumer.records = {P0: bad_records(2)}
        await wait_until(lambda: service.delivery.pending() == 2, 5, "outcomes ready")
        await kafka.consumer.rebalance({P1})
        assert kafka.journal.count("read 0") == 4
        assert after(kafka.journal, "transaction.commit", "read 0")
        assert kafka.group.committed[P0] == 2


async def test_a_member_stopped_before_it_ran_leaves_too(make_settings: SettingsFactory) -> None:
    kafka = FakeKafka({P0})
    settings = settings_for(make_settings)
    async with Runtime(settings, progress=False) as runtime:
        model = LoadedModel("fake-model", object(), [], 0.0, 0.0, 0, True)  # type: ignore[arg-type]
        state = ServiceState(model_loaded=True)
        service = KafkaService(settings, runtime, model, Metrics(), state, kafka.clients())
        await service.start()
        assert state.ready
        await service.close()
    assert not state.ready
    assert after(kafka.journal, "leave", "consumer.stop")
    assert "producer.stop" in kafka.journal


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
