"""Leaving the group on a graceful stop, against a fake coordinator (no broker).

The fake negotiates versions the way a broker connection does (`Request.prepare` with the
broker's ApiVersions range) and answers with scripted error codes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import stamina
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.group import LeaveGroupResponse_v1

from consumer.kafka.leave_group import LeaveGroupResponse_v3, LeaveGroupResponse_v5
from consumer.kafka.membership import GroupSession, LeaveOutcome, MemberIdentity, leave_group

STATIC = MemberIdentity("grp", "member-7", generation=4, instance_id="pod-a")
DYNAMIC = MemberIdentity("grp", "member-8", generation=4, instance_id=None)
NOT_CODE = 16  # NOT_COORDINATOR: retriable, the coordinator moved
FENCED = 82  # FENCED_INSTANCE_ID: not retriable


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    with stamina.set_testing(True, attempts=5, cap=True):
        yield


@dataclass
class FakeCoordinator:
    """A GroupSession whose coordinator speaks LeaveGroup `versions` and answers `codes` in
    turn (an exception in `codes` is raised instead)."""

    identity_: MemberIdentity | None
    versions: tuple[int, int] = (0, 5)
    codes: list[int | Exception] = field(default_factory=list)
    stop_delay_s: float = 0.0
    send_delay_s: float = 0.0
    events: list[str] = field(default_factory=list)
    sent: list[Any] = field(default_factory=list)

    def identity(self) -> MemberIdentity | None:
        return self.identity_

    async def stop_coordination(self) -> None:
        self.events.append("stop")
        await asyncio.sleep(self.stop_delay_s)
        self.events.append("stopped")

    async def send_to_coordinator(self, request: Any) -> Any:
        wire = request.prepare({13: self.versions})  # may raise, as on a real connection
        self.events.append(f"send v{wire.API_VERSION}")
        self.sent.append(wire)
        await asyncio.sleep(self.send_delay_s)
        code = self.codes.pop(0) if self.codes else 0
        if isinstance(code, Exception):
            raise code
        if wire.API_VERSION < 3:
            return LeaveGroupResponse_v1(0, code)
        rows = [(m[0], m[1], code) for m in wire.members]
        if wire.API_VERSION == 3:
            return LeaveGroupResponse_v3(0, 0, rows)
        return LeaveGroupResponse_v5(0, 0, [(*row, {}) for row in rows], {})


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
