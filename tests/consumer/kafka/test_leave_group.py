"""LeaveGroup v3-v5 on the wire, checked against bytes written out by hand from Kafka's
LeaveGroupRequest.json / LeaveGroupResponse.json (not from aiokafka's encoders)."""

from __future__ import annotations

import struct

import pytest

from consumer.kafka.leave_group import (
    LeaveGroupResponse_v3,
    LeaveGroupResponse_v4,
    LeaveGroupResponse_v5,
    LeavingMember,
    StaticLeaveGroupRequest,
    error_name,
    parse_leave_group_response,
)


def string(text: str | None) -> bytes:  # int16 length, -1 for null
    if text is None:
        return struct.pack(">h", -1)
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def compact(text: str | None) -> bytes:  # unsigned varint of length + 1, 0 for null
    if text is None:
        return b"\x00"
    raw = text.encode()
    assert len(raw) + 1 < 128  # one varint byte in these tests
    return bytes([len(raw) + 1]) + raw


NO_TAGS = b"\x00"
BROKER_VERSIONS = {13: (0, 5)}


def request(reason: str | None = "shutdown") -> StaticLeaveGroupRequest:
    return StaticLeaveGroupRequest("grp", [LeavingMember("m-1", "pod-a", reason)])


def test_the_highest_version_the_broker_knows_is_built() -> None:
    assert request().prepare({13: (0, 5)}).API_VERSION == 5
    assert request().prepare({13: (0, 4)}).API_VERSION == 4
    assert request().prepare({13: (3, 3)}).API_VERSION == 3


def test_a_broker_without_v3_cannot_take_a_static_leave() -> None:
    with pytest.raises(NotImplementedError):
        request().prepare({13: (0, 2)})


def test_v3_encodes_group_then_an_array_of_member_and_instance_ids() -> None:
    body = request().prepare({13: (0, 3)}).encode()
    assert body == string("grp") + struct.pack(">i", 1) + string("m-1") + string("pod-a")


def test_v4_is_flexible_compact_strings_and_tagged_fields() -> None:
    struct_ = request().prepare({13: (0, 4)})
    assert struct_.FLEXIBLE_VERSION
    body = struct_.encode()
    member = compact("m-1") + compact("pod-a") + NO_TAGS
    assert body == compact("grp") + b"\x02" + member + NO_TAGS


@pytest.mark.parametrize("reason", ["rollout", None])
def test_v5_adds_a_nullable_reason_per_member(reason: str | None) -> None:
    body = request(reason).prepare(BROKER_VERSIONS).encode()
    member = compact("m-1") + compact("pod-a") + compact(reason) + NO_TAGS
    assert body == compact("grp") + b"\x02" + member + NO_TAGS


def test_flexible_requests_use_the_v2_request_header_with_tags() -> None:
    header = request().prepare(BROKER_VERSIONS).build_request_header(7, "bw").encode()
    assert header == struct.pack(">hhi", 13, 5, 7) + string("bw") + NO_TAGS


def test_several_members_leave_in_one_request() -> None:
    leaving = [LeavingMember("", "pod-a"), LeavingMember("", "pod-b")]
    body = StaticLeaveGroupRequest("g", leaving).prepare({13: (0, 3)}).encode()
    assert body == (
        string("g") + struct.pack(">i", 2) + string("") + string("pod-a") + string("")
        + string("pod-b")
    )  # fmt: skip


def test_a_v3_answer_without_errors_is_ok() -> None:
    raw = (
        struct.pack(">ih", 0, 0) + struct.pack(">i", 1) + string("m-1") + string("pod-a")
        + struct.pack(">h", 0)
    )  # fmt: skip
    result = parse_leave_group_response(LeaveGroupResponse_v3.decode(raw))
    assert result.error_codes() == []
    assert result.version == 3
    assert [(m.member_id, m.group_instance_id) for m in result.members] == [("m-1", "pod-a")]


@pytest.mark.parametrize("response_type", [LeaveGroupResponse_v4, LeaveGroupResponse_v5])
def test_a_flexible_answer_carries_per_member_errors(response_type: type) -> None:
    fenced = 82  # FENCED_INSTANCE_ID: another member holds the instance id now
    raw = (
        struct.pack(">ih", 5, 0) + b"\x02" + compact("m-1") + compact("pod-a")
        + struct.pack(">h", fenced) + NO_TAGS + NO_TAGS
    )  # fmt: skip
    result = parse_leave_group_response(response_type.decode(raw))
    assert result.error_codes() == [fenced]
    assert result.members[0].error_code == fenced
    assert error_name(fenced) == "FENCED_INSTANCE_ID"


def test_a_group_level_error_is_not_ok() -> None:
    raw = struct.pack(">ih", 0, 25) + struct.pack(">i", 0)  # UNKNOWN_MEMBER_ID, no members
    result = parse_leave_group_response(LeaveGroupResponse_v3.decode(raw))
    assert result.error_codes() == [25]
    assert error_name(25) == "UnknownMemberIdError"
