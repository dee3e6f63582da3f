"""The one way tests and benchmarks get a real Kafka broker.

`kafka_broker` yields a bootstrap address: the one given, else (when asked to consider it) a
testcontainers broker when its images are already local (or BIRDWATCH_TEST_KAFKA_BROKER says
so), else the broker of `scripts/kafka`,
started for the block unless it already ran. `ScriptBroker` drives `scripts/kafka` for any home
directory and ports: the shared development broker, a private one a test may stop and restart,
or one with a SASL/PLAIN listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from consumer.testing.waiting import free_port

REPO = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO / "scripts" / "kafka"
JAVA = shutil.which("java")


def default_home() -> Path:
    """Where `scripts/kafka` keeps the shared broker (its jars too): $KAFKA_HOME_DIR."""
    return Path(os.environ.get("KAFKA_HOME_DIR") or REPO / ".cache" / "kafka")


def _env_port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@dataclass
class ScriptBroker:
    """A single-node broker run by `scripts/kafka` in `home` on the given ports.

    A broker with a home of its own links the jars the shared broker already resolved, so no
    Maven run is needed. With `sasl_users`, a SASL_PLAINTEXT listener (PLAIN, these users) is
    added on `sasl_port`; the PLAINTEXT one stays for the test's own helpers.
    """

    home: Path = field(default_factory=default_home)
    port: int = field(default_factory=lambda: _env_port("KAFKA_PORT", 9092))
    controller_port: int = field(default_factory=lambda: _env_port("KAFKA_CONTROLLER_PORT", 9093))
    sasl_users: dict[str, str] = field(default_factory=dict)
    sasl_port: int | None = None
    stop_timeout_s: int | None = None  # the script's own (30 s) when None

    @classmethod
    def private(cls, home: Path, sasl_users: dict[str, str] | None = None) -> ScriptBroker:
        """A broker of its own in `home`, on free ports."""
        users = dict(sasl_users or {})
        sasl_port = free_port() if users else None
        return cls(home, free_port(), free_port(), users, sasl_port, stop_timeout_s=20)

    def __post_init__(self) -> None:
        shared = default_home() / "libs"
        libs = self.home / "libs"
        if self.home.resolve() != default_home().resolve() and (shared / ".resolved").exists():
            self.home.mkdir(parents=True, exist_ok=True)
            if not libs.exists():
                libs.symlink_to(shared.resolve(), target_is_directory=True)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        if self.sasl_port is None:
            raise ValueError("this broker has no SASL listener")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_HOME_DIR": str(self.home),
            "KAFKA_START_TIMEOUT": os.environ.get("KAFKA_START_TIMEOUT", "90"),
        }
        if self.stop_timeout_s is not None:
            env["KAFKA_STOP_TIMEOUT"] = str(self.stop_timeout_s)
        if self.sasl_port is not None:
            env["KAFKA_SASL_PORT"] = str(self.sasl_port)
            env["KAFKA_SASL_USERS"] = ",".join(f"{u}:{p}" for u, p in self.sasl_users.items())
        return env

    def run(self, command: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        """`scripts/kafka COMMAND` for this broker (start, stop or status)."""
        return subprocess.run(
            [str(KAFKA_SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def running(self) -> bool:
        return self.run("status", 30).returncode == 0

    def start(self) -> float:
        """Start the broker (nothing when it runs); returns the seconds until it answered."""
        started = time.monotonic()
        done = self.run("start")
        if done.returncode != 0:
            raise RuntimeError(f"scripts/kafka start failed:\n{done.stderr[-3000:]}")
        return time.monotonic() - started

    def stop(self) -> float:
        """Stop the broker (SIGTERM, SIGKILL after the script's timeout); returns seconds."""
        started = time.monotonic()
        done = self.run("stop", 120)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/kafka stop failed:\n{done.stderr[-3000:]}")
        return time.monotonic() - started

    async def start_async(self, attempts: int = 2) -> float:
        """`start` in a thread (the caller's event loop keeps going), retried once: a JVM just
        stopped may still hold the data directory."""
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                await asyncio.to_thread(self.start)
            except RuntimeError:
                if attempt == attempts:
                    raise
                await asyncio.sleep(2)
            else:
                break
        return time.monotonic() - started

    async def stop_async(self) -> float:
        return await asyncio.to_thread(self.stop)

    def pid(self) -> int | None:
        """The broker's pid when it runs (to read its CPU time)."""
        try:
            pid = int((self.home / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def remove(self) -> None:
        """Stop the broker and delete its home (for private brokers)."""
        with contextlib.suppress(subprocess.TimeoutExpired, RuntimeError):
            self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


Choice = Literal["given", "testcontainers", "script"]
CHOICES = ("testcontainers", "script")


def docker(*args: str) -> bool:
    """The docker command answers `args` with success (False when there is no docker)."""
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", *args], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def docker_available() -> bool:
    return docker("info")


def testcontainers_images() -> list[str]:
    """The images a testcontainers Kafka needs: its default Kafka image, Ryuk unless disabled."""
    from testcontainers.core.config import testcontainers_config
    from testcontainers.kafka import KafkaContainer

    images = [inspect.signature(KafkaContainer.__init__).parameters["image"].default]
    if not testcontainers_config.ryuk_disabled:
        images.append(testcontainers_config.ryuk_image)
    return images


def choose_broker(
    given: str,
    asked: str,
    docker_answers: Callable[[], bool],
    image_present: Callable[[str], bool],
    images: Callable[[], Sequence[str]],
) -> Choice:
    """Which broker a test session uses; `asked` is BIRDWATCH_TEST_KAFKA_BROKER ("" = choose).

    testcontainers is chosen only when it can work without pulling: its images are already in
    the local engine. An engine that answers is not enough; on a machine without a registry
    `docker info` works but nothing can be pulled.
    """
    if given:
        return "given"
    if asked:
        if asked not in CHOICES:
            raise ValueError(f"BIRDWATCH_TEST_KAFKA_BROKER must be one of {CHOICES}, not {asked!r}")
        return "testcontainers" if asked == "testcontainers" else "script"
    if docker_answers() and all(image_present(i) for i in images()):
        return "testcontainers"
    return "script"


@contextlib.contextmanager
def kafka_broker(
    given: str = "", *, port: int | None = None, containers: bool = False
) -> Iterator[str]:
    """Yield a bootstrap address: `given`, else (with `containers`) a testcontainers broker when
    `choose_broker` picks it, else `scripts/kafka` on `port` ($KAFKA_PORT by default), started
    for the block and stopped after it unless it already ran."""
    if given:
        yield given
        return
    if containers:
        choice = choose_broker(
            given,
            os.environ.get("BIRDWATCH_TEST_KAFKA_BROKER", ""),
            docker_available,
            lambda image: docker("image", "inspect", image),
            testcontainers_images,
        )
        if choice == "testcontainers":
            from testcontainers.kafka import KafkaContainer

            with KafkaContainer().with_kraft() as container:
                yield container.get_bootstrap_server()
            return
    broker = ScriptBroker() if port is None else ScriptBroker(port=port)
    already = broker.running()
    if not already:
        broker.start()
    try:
        yield broker.bootstrap
    finally:
        if not already:
            broker.stop()
