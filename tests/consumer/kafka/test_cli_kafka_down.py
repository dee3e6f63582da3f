"""`birdwatch publish`, `results` and `topics create` facing a broker that is down: one line on
stderr with a hint, no leaked client, exit status 3, within a bounded time. No broker needed:
a loopback port nobody listens on, and one that accepts connections but never answers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer import cli
from consumer.kafka import reach
from consumer.kafka.reach import (
    EXIT_KAFKA_UNAVAILABLE,
    KafkaUnreachableError,
    started,
)
from consumer.testing.serve import BIRDWATCH
from consumer.testing.waiting import free_port

COMMANDS = [
    ["topics", "create"],
    ["publish", "https://birds.example/a.jpg"],
    ["results", "--timeout", "5"],
]


@pytest.fixture
def nobody_listening(monkeypatch: pytest.MonkeyPatch) -> str:
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS", address)
    monkeypatch.setenv("BIRDWATCH_LOG_FORMAT", "json")
    return address


@pytest.fixture
def black_hole(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A port whose connections the kernel accepts and nobody ever answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS", address)
        monkeypatch.setenv("BIRDWATCH_LOG_FORMAT", "json")
        yield address


def expect_one_line(err: str, address: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    [line] = lines
    assert line.startswith(f"birdwatch: cannot reach Kafka at {address} (")
    assert "`scripts/kafka start`" in line
    assert "BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS" in line
    return line


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
async def test_a_command_facing_a_refused_port_says_so_in_one_line(
    args: list[str], nobody_listening: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started_at = time.monotonic()
    code = await asyncio.wait_for(asyncio.to_thread(cli.main, args), 60)
    elapsed = time.monotonic() - started_at
    out, err = capsys.readouterr()
    assert code == EXIT_KAFKA_UNAVAILABLE
    assert out == ""
    line = expect_one_line(err, nobody_listening)
    assert "Connect call failed" in line  # what aiokafka saw, instead of its own ERROR line
    assert elapsed < 60


async def test_a_broker_that_never_answers_is_given_up_after_the_connect_timeout(
    black_hole: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    timeout_s = 3.0  # the real bound (CONNECT_TIMEOUT_S, 15 s), shortened to keep the loop fast
    monkeypatch.setattr(reach, "CONNECT_TIMEOUT_S", timeout_s)
    started_at = time.monotonic()
    code = await asyncio.wait_for(asyncio.to_thread(cli.main, ["topics", "create"]), 120)
    elapsed = time.monotonic() - started_at
    _, err = capsys.readouterr()
    assert code == EXIT_KAFKA_UNAVAILABLE
    line = expect_one_line(err, black_hole)
    assert f"no answer within {timeout_s:g} s" in line
    assert timeout_s - 1 < elapsed < timeout_s + 30


def test_no_client_is_left_unclosed_at_exit(tmp_path: Path) -> None:
    """A fresh process, so that the clients are collected and asyncio's "Unclosed
    AIOKafkaProducer" error, if any, is written before it exits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIRDWATCH_")}
    env["BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
    for args in COMMANDS:
        run = subprocess.run(
            [str(BIRDWATCH), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == EXIT_KAFKA_UNAVAILABLE, run.stderr
        assert "Unclosed" not in run.stderr
        assert len(run.stderr.splitlines()) == 1, run.stderr


class Client:
    def __init__(self, fails: BaseException | None = None) -> None:
        self.fails = fails
        self.stopped = 0

    async def start(self) -> None:
        if self.fails is not None:
            raise self.fails

    async def stop(self) -> None:
        self.stopped += 1


async def test_a_started_client_is_stopped_whatever_happens() -> None:
    ok = Client()
    with pytest.raises(RuntimeError):
        async with started(ok, "b:9092"):
            raise RuntimeError("the command failed")
    assert ok.stopped == 1
    # Interrupted while connecting: stopped, and the interruption goes on.
    interrupted = Client(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        async with started(interrupted, "b:9092"):
            pass
    assert interrupted.stopped == 1
    refused = Client(OSError("refused"))
    with pytest.raises(KafkaUnreachableError, match=r"at b:9092 \(OSError: refused\)"):
        async with started(refused, "b:9092"):
            pass
    assert refused.stopped == 1


async def test_other_kafka_errors_are_one_line_too(
    nobody_listening: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiokafka.errors import TopicAuthorizationFailedError

    from consumer.kafka import serve, topics
    from consumer.kafka.produce_errors import DeliveryFailedError

    async def refused(*_: object) -> int:
        raise TopicAuthorizationFailedError("bird-images")

    async def fenced(*_: object) -> int:
        raise DeliveryFailedError("images/0/5: ProducerFenced")

    monkeypatch.setattr(topics, "create_topics", refused)
    monkeypatch.setattr(serve, "run_serve", fenced)
    assert await asyncio.to_thread(cli.main, ["topics", "create"]) == EXIT_KAFKA_UNAVAILABLE
    _, err = capsys.readouterr()
    assert err == "birdwatch: kafka error: TopicAuthorizationFailedError: bird-images\n"
    # serve's own status for a member that could write nothing more stays 1.
    assert await asyncio.to_thread(cli.main, ["serve"]) == 1
    _, err = capsys.readouterr()
    assert err.splitlines() == [
        "birdwatch: kafka error: DeliveryFailedError: images/0/5: ProducerFenced"
    ]
