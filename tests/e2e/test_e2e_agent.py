"""e2e/agent.py: its arguments and the pure parts (the Kafka side runs in `make e2e-*`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from e2e import agent
from schemas import Prediction, PredictionResult


def test_event_ids_sort_in_publish_order() -> None:
    ids = [agent.event_id("run", i) for i in (0, 9, 10, 123456)]
    assert ids == sorted(ids)
    assert ids[0] == "run-000000"


def test_result_fields_of_a_real_result() -> None:
    ok = PredictionResult.ok(
        "e-1", "http://h/p.jpg", [Prediction(label_id=1, label="Ara macao", score=0.9)], "m", {}
    )
    assert agent.result_fields(ok.to_json()) == {
        "id": "e-1",
        "url": "http://h/p.jpg",
        "status": "ok",
        "label": "Ara macao",
        "error": None,
    }
    from schemas.errors import ErrorCode

    failed = PredictionResult.failed("e-2", "http://h/x", ErrorCode.TIMEOUT, "slow", "m")
    fields = agent.result_fields(failed.to_json())
    assert (fields["status"], fields["label"], fields["error"]) == ("error", None, "timeout")
    assert agent.result_fields(b"not json")["status"] == "unreadable"


def test_group_members_decode_their_assignment() -> None:
    assignment = ConsumerProtocolMemberAssignment(0, [("bird-images", [4, 1])], b"").encode()
    description = SimpleNamespace(
        groups=[
            (
                0,
                "birdwatch",
                "Stable",
                "consumer",
                "range",
                [
                    ("m-1", "birdwatch-pod-a", "/10.0.0.5", b"", assignment),
                    ("m-2", "birdwatch-pod-b", "/10.0.0.6", b"", b""),
                ],
            )
        ]
    )
    assert agent.members_of(description) == [
        {"member": "m-1", "client": "birdwatch-pod-a", "host": "/10.0.0.5", "partitions": [1, 4]},
        {"member": "m-2", "client": "birdwatch-pod-b", "host": "/10.0.0.6", "partitions": []},
    ]


def test_emit_writes_one_json_line(capsys) -> None:
    agent.emit({"kind": "lag", "lag": 3})
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out) == {"kind": "lag", "lag": 3}


def test_arguments() -> None:
    parser = agent.build_parser()
    args = parser.parse_args(
        [
            "publish",
            "--bootstrap",
            "b:9092",
            "--topic",
            "t",
            "--prefix",
            "p",
            "--url",
            "http://a",
            "--url=http://b",
            "--rate",
            "20",
            "--until-eof",
        ]
    )
    assert (args.url, args.rate, args.count, args.until_eof) == (
        ["http://a", "http://b"],
        20.0,
        None,
        True,
    )
    collect = parser.parse_args(
        [
            "collect",
            "--bootstrap",
            "b",
            "--input",
            "i",
            "--results",
            "r",
            "--prefix",
            "p",
            "--expect",
            "5",
        ]
    )
    assert (collect.isolation, collect.idle) == ("read_uncommitted", 60.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["publish", "--bootstrap", "b", "--topic", "t", "--prefix", "p"])
    assert set(agent.COMMANDS) == {"publish", "collect", "lag", "group", "idle"}


def test_agent_imports_only_what_the_image_has() -> None:
    """It runs in the Birdwatch image from a ConfigMap: aiokafka, schemas and the standard
    library, nothing of the e2e package or of the tests."""
    source = agent.__file__
    assert source is not None
    imports = [
        line.split()[1]
        for line in Path(source).read_text().splitlines()
        if line.startswith(("import ", "from "))
    ]
    third_party = {name.split(".")[0] for name in imports} - {
        "__future__",
        "argparse",
        "asyncio",
        "json",
        "signal",
        "sys",
        "time",
        "collections",
        "datetime",
        "typing",
    }
    assert third_party == {"aiokafka", "schemas"}
