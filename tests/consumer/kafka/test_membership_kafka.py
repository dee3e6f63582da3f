"""Leaving the group against the real broker: LeaveGroup v3+ is answered without error, the
member is gone from the group (DescribeGroups through the admin client), and the remaining
member owns every partition long before the 30 s session timeout could have done it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from consumer.kafka import leave_group as protocol
from consumer.kafka.membership import AiokafkaGroupSession, LeaveOutcome, leave_group
from consumer.testing.topics import Topics, create_topics
from consumer.testing.waiting import wait_until

pytestmark = pytest.mark.kafka

PARTITIONS = 6
SESSION_TIMEOUT_MS = 30_000  # what the Deployment uses: a handover within 5 s is the leave's


async def member_ids(bootstrap: str, group: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    [described] = response.groups  # (error_code, group, state, protocol_type, protocol, members)
    return sorted(member[0] for member in described[5])


MemberFactory = Callable[[str | None], AIOKafkaConsumer]


@pytest.fixture
async def group(kafka_bootstrap: str) -> AsyncIterator[tuple[str, MemberFactory]]:
    """(group id, a factory of started members of it) on a fresh 6-partition topic."""
    names = Topics.unique("leave")
    await create_topics(kafka_bootstrap, [names.input], PARTITIONS)
    async with AsyncExitStack() as stack:

        def member(instance_id: str | None) -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=kafka_bootstrap,
                group_id=names.group,
                group_instance_id=instance_id,
                enable_auto_commit=False,
                session_timeout_ms=SESSION_TIMEOUT_MS,
                heartbeat_interval_ms=1000,
            )
            consumer.subscribe([names.input])
            stack.push_async_callback(consumer.stop)
            return consumer

        yield names.group, member


async def two_members(
    make: MemberFactory, static: bool
) -> tuple[AIOKafkaConsumer, AIOKafkaConsumer]:
    leaving, staying = make("pod-a" if static else None), make("pod-b" if static else None)
    await leaving.start()
    await staying.start()
    await wait_until(
        lambda: len(leaving.assignment()) == len(staying.assignment()) == PARTITIONS // 2,
        30,
        "both members assigned",
    )
    return leaving, staying


async def test_a_static_member_leaves_by_instance_id_and_its_partitions_move_at_once(
    kafka_bootstrap: str, group: tuple[str, MemberFactory]
) -> None:
    group_id, make = group
    leaving, staying = await two_members(make, static=True)
    session = AiokafkaGroupSession(leaving)
    identity = session.identity()
    assert identity is not None
    assert identity.joined
    assert identity.instance_id == "pod-a"
    assert identity.member_id in await member_ids(kafka_bootstrap, group_id)

    started = time.monotonic()
    assert await leave_group(session, "test", timeout_s=10) is LeaveOutcome.LEFT
    assert identity.member_id not in await member_ids(kafka_bootstrap, group_id)
    await leaving.stop()
    await wait_until(lambda: len(staying.assignment()) == PARTITIONS, 5, "the handover")
    assert time.monotonic() - started < SESSION_TIMEOUT_MS / 1000 / 2


async def test_a_static_member_without_the_leave_holds_its_partitions_until_the_timeout(
    kafka_bootstrap: str, group: tuple[str, MemberFactory]
) -> None:
    """What the leave is for: aiokafka alone sends nothing for a static member."""
    group_id, make = group
    leaving, staying = await two_members(make, static=True)
    identity = AiokafkaGroupSession(leaving).identity()
    assert identity is not None
    await leaving.stop()
    assert identity.member_id in await member_ids(kafka_bootstrap, group_id)
    with pytest.raises(TimeoutError):
        await wait_until(lambda: len(staying.assignment()) == PARTITIONS, 5, "a handover")


async def test_a_broker_without_leave_group_v3_gets_the_member_id_leave(
    kafka_bootstrap: str, group: tuple[str, MemberFactory], monkeypatch: pytest.MonkeyPatch
) -> None:
    group_id, make = group
    leaving, staying = await two_members(make, static=True)

    def no_v3(self: object, versions: object) -> object:
        raise NotImplementedError("LeaveGroup v3 (as from a Kafka 2.3 broker)")

    monkeypatch.setattr(protocol.StaticLeaveGroupRequest, "prepare", no_v3)
    session = AiokafkaGroupSession(leaving)
    identity = session.identity()
    assert identity is not None
    outcome = await leave_group(session, "test", timeout_s=10)
    assert outcome is LeaveOutcome.LEFT_BY_MEMBER_ID
    assert identity.member_id not in await member_ids(kafka_bootstrap, group_id)
    await wait_until(lambda: len(staying.assignment()) == PARTITIONS, 5, "the handover")


async def test_a_dynamic_member_is_left_to_aiokafkas_own_leave(
    kafka_bootstrap: str, group: tuple[str, MemberFactory]
) -> None:
    group_id, make = group
    leaving, staying = await two_members(make, static=False)
    session = AiokafkaGroupSession(leaving)
    identity = session.identity()
    assert identity is not None
    assert await leave_group(session, "test", timeout_s=10) is LeaveOutcome.LEFT_DYNAMIC
    assert identity.member_id not in await member_ids(kafka_bootstrap, group_id)
    await wait_until(lambda: len(staying.assignment()) == PARTITIONS, 5, "the handover")


async def test_a_consumer_never_started_has_nothing_to_leave(
    group: tuple[str, MemberFactory],
) -> None:
    _, make = group
    session = AiokafkaGroupSession(make("pod-c"))
    assert session.identity() is None
    assert await leave_group(session, "test", timeout_s=5) is LeaveOutcome.NOT_JOINED
