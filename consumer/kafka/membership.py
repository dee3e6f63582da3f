"""Leaving the consumer group explicitly, so a departing member's partitions move at once.

aiokafka sends LeaveGroup (v1) on close for a dynamic member only. For a static member
(`group.instance.id` set) it sends nothing, like the Java client: the broker keeps the member
until its session timeout, which is what lets a crashed container that restarts in time get its
partitions back without a rebalance, but also what makes every graceful departure (rollout,
scale-down, pod deletion) stall those partitions for the whole session timeout.

`leave_group` is for the graceful path only: it stops aiokafka's group coordination (no more
heartbeats, so nothing rejoins behind our back), then sends LeaveGroup v3+ naming our member id
and instance id (KIP-345) to the group coordinator through the consumer's own client. A crash
sends nothing, and static membership still works for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import stamina
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.client import ConnectionGroup, CoordinationType
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError, for_code
from aiokafka.protocol.group import LeaveGroupRequest

from consumer.kafka.leave_group import (
    LeavingMember,
    StaticLeaveGroupRequest,
    error_name,
    parse_leave_group_response,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class MemberIdentity:
    """Who we are in the group, as the coordinator knows us (generation < 0: not joined)."""

    group_id: str
    member_id: str
    generation: int
    instance_id: str | None

    @property
    def joined(self) -> bool:
        return self.generation >= 0 and bool(self.member_id)


class GroupSession(Protocol):
    """The pieces of a group member's client that leaving needs (aiokafka's, or a fake)."""

    def identity(self) -> MemberIdentity | None:
        """Our identity now; None when the consumer has no group coordinator."""
        ...

    async def stop_coordination(self) -> None:
        """Stop heartbeats and rejoins for good (a dynamic member sends its own leave here)."""
        ...

    async def send_to_coordinator(self, request: Any) -> Any:
        """Send `request` to the group's coordinator (looked up anew if unknown); its answer."""
        ...


class AiokafkaGroupSession:
    """`GroupSession` over an `AIOKafkaConsumer`. aiokafka has no public API for the member id
    or for its coordinator's lifecycle, so this is the one place that reads its internals
    (aiokafka 0.14: `_coordinator`, `_client`); tests/consumer/kafka run it against the broker."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    def identity(self) -> MemberIdentity | None:
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is None or not hasattr(coordinator, "member_id"):
            return None  # not started, or a consumer without a group
        return MemberIdentity(
            group_id=coordinator.group_id,
            member_id=coordinator.member_id,
            generation=coordinator.generation,
            instance_id=coordinator._group_instance_id,
        )

    async def stop_coordination(self) -> None:
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is not None:
            # Idempotent: the consumer's own stop() calls it again and returns at once.
            await coordinator.close()

    async def send_to_coordinator(self, request: Any) -> Any:
        client = self._consumer._client
        group_id = self._consumer._coordinator.group_id
        # Looked up on each attempt: a retry after NOT_COORDINATOR must go to the new one.
        node_id = await client.coordinator_lookup(CoordinationType.GROUP, group_id)
        return await client.send(node_id, request, group=ConnectionGroup.COORDINATION)


class LeaveOutcome(StrEnum):
    LEFT = "left"  # a static member, removed by LeaveGroup v3+ (KIP-345)
    LEFT_BY_MEMBER_ID = "left_by_member_id"  # a static member, broker without v3: LeaveGroup v1
    LEFT_DYNAMIC = "left_dynamic"  # a dynamic member: aiokafka's own LeaveGroup on close
    NOT_JOINED = "not_joined"  # never joined (or already out): nothing to leave
    FAILED = "failed"  # the broker removes us at the session timeout


class LeaveRejectedError(KafkaError):  # type: ignore[misc]
    """The coordinator answered the LeaveGroup with an error (group-level or for our member)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"{error_name(code)} (error code {code})")
        self.code = code
        self.retriable = bool(getattr(for_code(code), "retriable", False))


async def leave_group(session: GroupSession, reason: str, timeout_s: float) -> LeaveOutcome:
    """Stop taking part in the group and tell the coordinator we left; never raises.

    Retriable failures (coordinator moved or loading, connection lost) are retried within
    `timeout_s`; after that the broker removes us when our session times out."""
    identity = session.identity()  # before stopping: stopping forgets the member id
    try:
        async with asyncio.timeout(timeout_s):
            await session.stop_coordination()
    except TimeoutError:
        # E.g. stuck in a JoinGroup of a rebalance: leaving below ends that membership anyway.
        log.warning("group_coordination_stop_slow", timeout_s=timeout_s)
    if identity is None or not identity.joined:
        log.info("group_leave_skipped", reason="not_joined")
        return LeaveOutcome.NOT_JOINED
    if identity.instance_id is None:
        log.info(
            "group_left", outcome=LeaveOutcome.LEFT_DYNAMIC.value, member_id=identity.member_id
        )
        return LeaveOutcome.LEFT_DYNAMIC
    started = asyncio.get_running_loop().time()
    try:
        outcome = await _leave_static(session, identity, reason, timeout_s)
    except (KafkaError, TimeoutError) as exc:
        log.warning(
            "group_leave_failed",
            error=type(exc).__name__,
            detail=str(exc),
            instance_id=identity.instance_id,
            consequence="partitions move at the session timeout",
        )
        return LeaveOutcome.FAILED
    log.info(
        "group_left",
        outcome=outcome.value,
        member_id=identity.member_id,
        instance_id=identity.instance_id,
        ms=round((asyncio.get_running_loop().time() - started) * 1000, 1),
    )
    return outcome


async def _leave_static(
    session: GroupSession, identity: MemberIdentity, reason: str, timeout_s: float
) -> LeaveOutcome:
    assert identity.instance_id is not None
    member = LeavingMember(identity.member_id, identity.instance_id, reason)
    static = StaticLeaveGroupRequest(identity.group_id, [member])
    async with asyncio.timeout(timeout_s):
        async for attempt in stamina.retry_context(
            on=_retriable, attempts=5, timeout=timeout_s, wait_initial=0.1, wait_max=1.0
        ):
            with attempt:
                try:
                    response = await session.send_to_coordinator(static)
                except (NotImplementedError, IncompatibleBrokerVersion):
                    # Kafka < 2.4 has no LeaveGroup v3; v1 with the member id removes it too.
                    legacy = LeaveGroupRequest(identity.group_id, identity.member_id)
                    code = (await session.send_to_coordinator(legacy)).error_code
                    if code != 0:
                        raise LeaveRejectedError(code) from None
                    return LeaveOutcome.LEFT_BY_MEMBER_ID
                errors = parse_leave_group_response(response).error_codes()
                if errors:
                    raise LeaveRejectedError(errors[0])
                return LeaveOutcome.LEFT
    raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover


def _retriable(exc: Exception) -> bool:
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))
