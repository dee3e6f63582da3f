"""Leaving the group on a graceful stop, against a fake coordinator (no broker).

The fake (tests/consumer/kafka/fakes.py) negotiates versions the way a broker connection does
(`Request.prepare` with the broker's ApiVersions range) and answers with scripted error codes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import stamina
from aiokafka.errors import KafkaConnectionError

from consumer.kafka.membership import GroupSession, LeaveOutcome, MemberIdentity, leave_group
from tests.consumer.kafka.fakes import FakeCoordinator

STATIC = MemberIdentity("grp", "member-7", generation=4, instance_id="pod-a")
DYNAMIC = MemberIdentity("grp", "member-8", generation=4, instance_id=None)
NOT_CODE = 16  # NOT_COORDINATOR: retriable, the coordinator moved
FENCED = 82  # FENCED_INSTANCE_ID: not retriable


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    with stamina.set_testing(True, attempts=5, cap=True):
        yield


def test_the_fake_is_a_group_session() -> None:
    session: GroupSession = FakeCoordinator(STATIC)
    assert session.identity() == STATIC


async def test_a_static_member_stops_heartbeating_then_leaves_by_instance_id() -> None:
    fake = FakeCoordinator(STATIC)
    assert await leave_group(fake, "rollout", timeout_s=5) is LeaveOutcome.LEFT
    assert fake.events == ["stop", "stopped", "send v5"]
    [wire] = fake.sent
    assert wire.group == "grp"
    assert [tuple(m[:3]) for m in wire.members] == [("member-7", "pod-a", "rollout")]


async def test_a_v3_broker_gets_a_v3_leave() -> None:
    fake = FakeCoordinator(STATIC, versions=(0, 3))
    assert await leave_group(fake, "rollout", timeout_s=5) is LeaveOutcome.LEFT
    assert [w.API_VERSION for w in fake.sent] == [3]
    assert fake.sent[0].members == [("member-7", "pod-a")]


async def test_a_broker_without_v3_gets_the_member_id_leave() -> None:
    fake = FakeCoordinator(STATIC, versions=(0, 2))
    assert await leave_group(fake, "rollout", timeout_s=5) is LeaveOutcome.LEFT_BY_MEMBER_ID
    [wire] = fake.sent
    assert (wire.API_VERSION, wire.group, wire.member_id) == (1, "grp", "member-7")


async def test_a_legacy_leave_refused_fails() -> None:
    fake = FakeCoordinator(STATIC, versions=(0, 1), codes=[25])  # UNKNOWN_MEMBER_ID
    assert await leave_group(fake, "rollout", timeout_s=5) is LeaveOutcome.FAILED


async def test_a_dynamic_member_leaves_through_aiokafka_and_sends_nothing_more() -> None:
    fake = FakeCoordinator(DYNAMIC)
    assert await leave_group(fake, "rollout", timeout_s=5) is LeaveOutcome.LEFT_DYNAMIC
    assert fake.events == ["stop", "stopped"]


@pytest.mark.parametrize(
    "identity", [None, MemberIdentity("grp", "", generation=-1, instance_id="pod-a")]
)
async def test_a_member_that_never_joined_has_nothing_to_leave(
    identity: MemberIdentity | None,
) -> None:
    fake = FakeCoordinator(identity)
    assert await leave_group(fake, "rollout", timeout_s=5) is LeaveOutcome.NOT_JOINED
    assert fake.sent == []
    assert "stop" in fake.events


async def test_a_moved_coordinator_is_asked_again() -> None:
    fake = FakeCoordinator(STATIC, codes=[NOT_CODE, KafkaConnectionError("reset"), 0])
    assert await leave_group(fake, "rollout", timeout_s=5) is LeaveOutcome.LEFT
    assert len(fake.sent) == 3


async def test_a_fenced_instance_is_not_retried_and_fails() -> None:
    fake = FakeCoordinator(STATIC, codes=[FENCED, 0])
    assert await leave_group(fake, "rollout", timeout_s=5) is LeaveOutcome.FAILED
    assert len(fake.sent) == 1


async def test_retries_end_and_the_session_timeout_is_left_to_do_it() -> None:
    fake = FakeCoordinator(STATIC, codes=[KafkaConnectionError("down")] * 10)
    assert await leave_group(fake, "rollout", timeout_s=5) is LeaveOutcome.FAILED
    assert len(fake.sent) == 5  # stamina's attempts


async def test_an_unanswered_leave_gives_up_at_the_timeout() -> None:
    fake = FakeCoordinator(STATIC, send_delay_s=30)
    started = asyncio.get_running_loop().time()
    assert await leave_group(fake, "rollout", timeout_s=0.2) is LeaveOutcome.FAILED
    assert asyncio.get_running_loop().time() - started < 5


async def test_a_coordinator_stuck_closing_does_not_keep_the_member_in_the_group() -> None:
    fake = FakeCoordinator(STATIC, stop_delay_s=30)
    assert await leave_group(fake, "rollout", timeout_s=0.2) is LeaveOutcome.LEFT
    assert fake.events == ["stop", "send v5"]
