"""The fake of aiokafka's group-coordination pieces that the membership tests share: a
`GroupSession` whose coordinator negotiates versions the way a broker connection does
(`Request.prepare` with the broker's ApiVersions range) and answers scripted error codes.

Everything else a member needs (consumer, producer, admin, the group and its offsets) is the
kit's Kafka in memory (`consumer.testing.memory_kafka`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.protocol.group import LeaveGroupResponse_v1

from consumer.kafka.leave_group import LeaveGroupResponse_v3, LeaveGroupResponse_v5
from consumer.kafka.membership import MemberIdentity
from consumer.testing.memory_kafka import Journal


@dataclass
class FakeCoordinator:
    """A GroupSession whose coordinator speaks LeaveGroup `versions` and answers `codes` in
    turn (an exception in `codes` is raised instead). Its own steps go to `events`; with a
    `journal` (a `MemoryKafka`'s), "coordination.stop" and "leave" go there too, in order with
    what the member's other clients did."""

    identity_: MemberIdentity | None
    versions: tuple[int, int] = (0, 5)
    codes: list[int | Exception] = field(default_factory=list)
    stop_delay_s: float = 0.0
    send_delay_s: float = 0.0
    journal: Journal | None = None
    events: list[str] = field(default_factory=list)
    sent: list[Any] = field(default_factory=list)

    def identity(self) -> MemberIdentity | None:
        return self.identity_

    async def stop_coordination(self) -> None:
        self.events.append("stop")
        if self.journal is not None:
            self.journal.record("coordination.stop")
        await asyncio.sleep(self.stop_delay_s)
        self.events.append("stopped")

    async def send_to_coordinator(self, request: Any) -> Any:
        if self.journal is not None:
            self.journal.record("leave")
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
