"""LeaveGroup v3-v5 (KIP-345): a member leaves the group by `group.instance.id`.

aiokafka's protocol module defines LeaveGroup v0-v1 only, which carry a member id and no
instance id, and aiokafka sends no LeaveGroup at all for a static member (as the Java client
does), so a static member's partitions wait for its session timeout. These structs follow
Kafka's LeaveGroupRequest.json / LeaveGroupResponse.json: v3 batches members (member id plus
group instance id), v4 is the first flexible version (compact strings, tagged fields), v5 adds a
reason per member (KIP-800). `StaticLeaveGroupRequest` plugs into aiokafka's per-connection
version negotiation (`Request.prepare`): the highest version both sides know is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka.errors import for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Array,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    String,
    TaggedFields,
)

LEAVE_GROUP_API_KEY = 13
STATIC_LEAVE_MIN_VERSION = 3  # Kafka 2.4: the first LeaveGroup carrying group.instance.id

_MEMBER_RESPONSE_V3 = Array(
    ("member_id", String("utf-8")),
    ("group_instance_id", String("utf-8")),
    ("error_code", Int16),
)
_MEMBER_RESPONSE_V4 = CompactArray(
    ("member_id", CompactString("utf-8")),
    ("group_instance_id", CompactString("utf-8")),
    ("error_code", Int16),
    ("tags", TaggedFields),
)


# Class names follow aiokafka's protocol module (`LeaveGroupRequest_v1`).
class LeaveGroupResponse_v3(Response):  # type: ignore[misc]
    API_KEY = LEAVE_GROUP_API_KEY
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("members", _MEMBER_RESPONSE_V3),
    )


class LeaveGroupResponse_v4(Response):  # type: ignore[misc]
    API_KEY = LEAVE_GROUP_API_KEY
    API_VERSION = 4
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("members", _MEMBER_RESPONSE_V4),
        ("tags", TaggedFields),
    )


class LeaveGroupResponse_v5(Response):  # type: ignore[misc]
    API_KEY = LEAVE_GROUP_API_KEY
    API_VERSION = 5
    SCHEMA = LeaveGroupResponse_v4.SCHEMA


class LeaveGroupRequest_v3(RequestStruct):  # type: ignore[misc]
    API_KEY = LEAVE_GROUP_API_KEY
    API_VERSION = 3
    RESPONSE_TYPE = LeaveGroupResponse_v3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class LeaveGroupRequest_v4(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = LEAVE_GROUP_API_KEY
    API_VERSION = 4
    RESPONSE_TYPE = LeaveGroupResponse_v4
    SCHEMA = Schema(
        ("group", CompactString("utf-8")),
        (
            "members",
            CompactArray(
                ("member_id", CompactString("utf-8")),
                ("group_instance_id", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class LeaveGroupRequest_v5(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = LEAVE_GROUP_API_KEY
    API_VERSION = 5
    RESPONSE_TYPE = LeaveGroupResponse_v5
    SCHEMA = Schema(
        ("group", CompactString("utf-8")),
        (
            "members",
            CompactArray(
                ("member_id", CompactString("utf-8")),
                ("group_instance_id", CompactString("utf-8")),
                ("reason", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


LeaveGroupRequestStruct: TypeAlias = (
    LeaveGroupRequest_v3 | LeaveGroupRequest_v4 | LeaveGroupRequest_v5
)


@dataclass(frozen=True, slots=True)
class LeavingMember:
    """Who leaves: the member id the coordinator gave us ("" to leave by instance id alone, as
    an administrator's removal does) and the static instance id."""

    member_id: str
    group_instance_id: str
    reason: str | None = None


class StaticLeaveGroupRequest(Request[LeaveGroupRequestStruct]):  # type: ignore[misc]
    """LeaveGroup for static members; aiokafka picks v5, v4 or v3 from what the broker knows and
    raises `NotImplementedError` from `prepare` when it knows none of them (Kafka < 2.4)."""

    API_KEY = LEAVE_GROUP_API_KEY

    def __init__(self, group_id: str, members: list[LeavingMember]) -> None:
        self.group_id = group_id
        self.members = list(members)

    def build(self, request_struct_class: type[LeaveGroupRequestStruct]) -> LeaveGroupRequestStruct:
        version = request_struct_class.API_VERSION
        if version == 3:
            rows: list[tuple[Any, ...]] = [(m.member_id, m.group_instance_id) for m in self.members]
        elif version == 4:
            rows = [(m.member_id, m.group_instance_id, {}) for m in self.members]
        else:
            rows = [(m.member_id, m.group_instance_id, m.reason, {}) for m in self.members]
        tail: tuple[Any, ...] = () if version == 3 else ({},)
        return request_struct_class(self.group_id, rows, *tail)


# Error codes of static membership that aiokafka's errors module lacks (it maps them to
# UnknownError): named here so logs say what happened.
_UNNAMED_ERRORS = {82: "FENCED_INSTANCE_ID"}


def error_name(code: int) -> str:
    """A Kafka error code's name: aiokafka's error class, or the protocol's name."""
    if code in _UNNAMED_ERRORS:
        return _UNNAMED_ERRORS[code]
    return str(for_code(code).__name__)


@dataclass(frozen=True, slots=True)
class MemberLeaveResult:
    member_id: str
    group_instance_id: str | None
    error_code: int


@dataclass(frozen=True, slots=True)
class LeaveGroupResult:
    """The broker's answer: a group-level error code and one per member (0: no error)."""

    version: int
    error_code: int
    members: tuple[MemberLeaveResult, ...]

    def error_codes(self) -> list[int]:
        """Every error code in the answer, the group's first; empty when all went well."""
        codes = [self.error_code, *(m.error_code for m in self.members)]
        return [code for code in codes if code != 0]


def parse_leave_group_response(response: Any) -> LeaveGroupResult:
    """Read a LeaveGroup v3+ response struct into `LeaveGroupResult`."""
    members = tuple(MemberLeaveResult(row[0], row[1], row[2]) for row in response.members or ())
    return LeaveGroupResult(response.API_VERSION, response.error_code, members)
