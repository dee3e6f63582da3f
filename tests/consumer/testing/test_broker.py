"""The broker manager's choices and its driving of scripts/kafka, with a stand-in script (the
real one runs in every Kafka test)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import TracebackType

import pytest

from consumer.testing import broker as broker_module
from consumer.testing.broker import ScriptBroker, docker_available, kafka_broker

SCRIPT = """#!/usr/bin/env bash
echo "$1 $KAFKA_PORT $KAFKA_HOME_DIR ${KAFKA_SASL_PORT:-} ${KAFKA_SASL_USERS:-}" >> "$CALLS"
case $1 in
  status) [[ -f $KAFKA_HOME_DIR/up ]] && exit 0 || exit 3 ;;
  start) [[ -n ${FAIL_START:-} ]] && { echo "no java" >&2; exit 1; }; touch "$KAFKA_HOME_DIR/up" ;;
  stop) rm -f "$KAFKA_HOME_DIR/up" ;;
esac
"""


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in scripts/kafka that logs its calls; returns the log."""
    path = tmp_path / "kafka"
    path.write_text(SCRIPT)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls"
    calls.touch()
    monkeypatch.setattr(broker_module, "KAFKA_SCRIPT", path)
    monkeypatch.setenv("CALLS", str(calls))
    monkeypatch.setenv("KAFKA_HOME_DIR", str(tmp_path / "shared"))
    (tmp_path / "shared" / "libs").mkdir(parents=True)
    (tmp_path / "shared" / "libs" / ".resolved").touch()
    return calls


def commands(calls: Path) -> list[str]:
    return [line.split()[0] for line in calls.read_text().splitlines()]


def test_a_given_address_is_used_as_it_is(script: Path) -> None:
    with kafka_broker("broker:9092", containers=True) as bootstrap:
        assert bootstrap == "broker:9092"
    assert commands(script) == []


def test_the_script_broker_is_started_for_the_block_and_stopped_after(script: Path) -> None:
    with kafka_broker(port=8765) as bootstrap:
        assert bootstrap == "127.0.0.1:8765"
        assert commands(script) == ["status", "start"]
    assert commands(script) == ["status", "start", "stop"]
    assert script.read_text().split()[1] == "8765"


def test_a_running_script_broker_is_left_running(script: Path, tmp_path: Path) -> None:
    (tmp_path / "shared" / "up").touch()
    with kafka_broker() as bootstrap:
        assert bootstrap.startswith("127.0.0.1:")
    assert commands(script) == ["status"]


def test_testcontainers_when_docker_answers(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeContainer:
        def with_kraft(self) -> FakeContainer:
            return self

        def __enter__(self) -> FakeContainer:
            return self

        def __exit__(
            self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
        ) -> None:
            return None

        def get_bootstrap_server(self) -> str:
            return "container:9093"

    import testcontainers.kafka

    monkeypatch.setattr(testcontainers.kafka, "KafkaContainer", FakeContainer)
    monkeypatch.delenv("BIRDWATCH_TEST_KAFKA_BROKER", raising=False)
    monkeypatch.setattr(broker_module, "docker_available", lambda: True)
    monkeypatch.setattr(broker_module, "docker", lambda *args: True)  # its images are local
    monkeypatch.setattr(broker_module, "testcontainers_images", lambda: ["cp-kafka:7"])
    with kafka_broker(containers=True) as bootstrap:
        assert bootstrap == "container:9093"
    with kafka_broker(containers=False) as bootstrap:  # the benchmarks never use containers
        assert bootstrap.startswith("127.0.0.1:")
    assert commands(script) == ["status", "start", "stop"]


def test_docker_is_not_available_without_a_docker_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert docker_available() is False


def test_a_private_broker_has_its_own_ports_home_and_the_shared_jars(
    script: Path, tmp_path: Path
) -> None:
    broker = ScriptBroker.private(tmp_path / "private", {"alice": "s3cret"})
    assert (tmp_path / "private" / "libs").resolve() == (tmp_path / "shared" / "libs").resolve()
    assert len({broker.port, broker.controller_port, broker.sasl_port}) == 3
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.sasl_bootstrap == f"127.0.0.1:{broker.sasl_port}"
    assert broker.env["KAFKA_SASL_USERS"] == "alice:s3cret"
    assert broker.env["KAFKA_STOP_TIMEOUT"] == "20"
    assert broker.start() >= 0
    assert broker.running()
    assert broker.stop() >= 0
    assert not broker.running()
    assert script.read_text().splitlines()[1].split()[3:] == [str(broker.sasl_port), "alice:s3cret"]
    broker.remove()
    assert not (tmp_path / "private").exists()


async def test_async_start_retries_once_then_fails(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = ScriptBroker.private(tmp_path / "private")
    with pytest.raises(ValueError, match="no SASL"):
        _ = broker.sasl_bootstrap
    assert await broker.start_async() >= 0
    assert await broker.stop_async() >= 0
    monkeypatch.setenv("FAIL_START", "1")
    monkeypatch.setattr(broker_module.asyncio, "sleep", _no_sleep)
    with pytest.raises(RuntimeError, match="no java"):
        await broker.start_async(attempts=2)
    assert commands(script).count("start") == 3


async def _no_sleep(seconds: float) -> None:
    return None


def test_stop_failures_are_errors(script: Path, tmp_path: Path) -> None:
    script_path = broker_module.KAFKA_SCRIPT
    script_path.write_text("#!/usr/bin/env bash\necho broken >&2\nexit 1\n")
    broker = ScriptBroker.private(tmp_path / "private")
    with pytest.raises(RuntimeError, match="broken"):
        broker.stop()


def test_the_pid_is_read_from_the_home(tmp_path: Path) -> None:
    broker = ScriptBroker(home=tmp_path, port=1, controller_port=2)
    assert broker.pid() is None
    (tmp_path / "kafka.pid").write_text(str(os.getpid()))
    assert broker.pid() == os.getpid()
    (tmp_path / "kafka.pid").write_text("not a pid")
    assert broker.pid() is None
