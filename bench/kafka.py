"""The Kafka side of the stream scenarios: broker, topics, a paced publisher, a result reader,
and `birdwatch serve` processes with their endpoints. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.paths import BIRDWATCH, REPO
from bench.procs import pin_to
from bench.stats import HistogramSnapshot, parse_histograms

# --- the broker -------------------------------------------------------------------------------


@contextmanager
def kafka_broker(given: str | None = None) -> Iterator[str]:
    """Yield a bootstrap address: `given` (or BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS), else the
    broker of `scripts/kafka`, started if needed and then stopped again."""
    given = given or os.environ.get("BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    script = REPO / "scripts" / "kafka"
    running = subprocess.run([script, "status"], capture_output=True, check=False).returncode == 0
    if not running:
        subprocess.run([script, "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    finally:
        if not running:
            subprocess.run([script, "stop"], check=False, stdout=subprocess.DEVNULL)


def broker_pid() -> int | None:
    """The pid of the `scripts/kafka` broker, when it runs here (to read its CPU time)."""
    pid_file = REPO / ".cache" / "kafka" / "kafka.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


# --- topics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """Topic and group names private to one benchmark run."""

    input: str
    results: str
    dlq: str
    group: str

    @classmethod
    def unique(cls, prefix: str) -> Topics:
        tag = uuid.uuid4().hex[:8]
        return cls(
            f"bench-{prefix}-in-{tag}",
            f"bench-{prefix}-out-{tag}",
            f"bench-{prefix}-dlq-{tag}",
            f"bench-{prefix}-{tag}",
        )

    def env(self) -> dict[str, str]:
        return {
            "BIRDWATCH_INPUT_TOPIC": self.input,
            "BIRDWATCH_RESULTS_TOPIC": self.results,
            "BIRDWATCH_DLQ_TOPIC": self.dlq,
            "BIRDWATCH_GROUP_ID": self.group,
        }


async def create_topics(bootstrap: str, topics: Topics, partitions: int) -> None:
    """Create the three topics and wait until every partition has a leader."""
    names = [topics.input, topics.results, topics.dlq]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in names])
        deadline = time.monotonic() + 30
        while True:
            described = await admin.describe_topics(names)
            if all(
                d["error_code"] == 0
                and len(d["partitions"]) == partitions
                and all(p["leader"] >= 0 for p in d["partitions"])
                for d in described
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not ready: {described}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, topics: Topics) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(Exception):
            await admin.delete_topics([topics.input, topics.results, topics.dlq])
    finally:
        await admin.close()


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, member count) of a consumer group, as the coordinator reports it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in responses:
        for described in response.groups:
            # (error_code, group_id, state, protocol_type, protocol, members, ...)
            return str(described[2]), len(described[5])
    return "Unknown", 0


async def wait_group_stable(bootstrap: str, group: str, members: int, timeout_s: float) -> float:
    """Wait until the group is Stable with `members` members; returns the seconds waited."""
    start = time.monotonic()
    while True:
        state, count = await group_members(bootstrap, group)
        if state == "Stable" and count == members:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"group {group}: {state} with {count} members, want {members}")
        await asyncio.sleep(0.25)


# --- publishing and reading --------------------------------------------------------------------


@dataclass
class Sent:
    """When each event id was handed to the producer (epoch seconds)."""

    at: dict[str, float] = field(default_factory=dict)


class Publisher:
    """Publishes ImageEvents, in a burst or at a steady rate, remembering when each was sent."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2)
        self.sent = Sent()

    async def __aenter__(self) -> Publisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def _send(self, event_id: str, url: str) -> None:
        self.sent.at[event_id] = time.time()
        value = orjson.dumps({"id": event_id, "url": url})
        await self._producer.send(self._topic, value, key=event_id.encode())

    async def burst(self, urls: Sequence[str], count: int, prefix: str) -> list[str]:
        """Publish `count` events as fast as possible, cycling through `urls`."""
        ids = [f"{prefix}-{i}" for i in range(count)]
        for i, event_id in enumerate(ids):
            await self._send(event_id, urls[i % len(urls)])
        await self._producer.flush()
        return ids

    async def steady(self, urls: Sequence[str], rate: float, count: int, prefix: str) -> list[str]:
        """Publish `count` events at `rate` per second (on an absolute schedule, so a late send
        does not shift the ones after it)."""
        ids = [f"{prefix}-{i}" for i in range(count)]
        start = time.perf_counter()
        for i, event_id in enumerate(ids):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._send(event_id, urls[i % len(urls)])
        await self._producer.flush()
        return ids


@dataclass(frozen=True)
class Received:
    status: str
    produced_ms: int  # the result record's timestamp: when the service produced it
    read_at: float


class ResultReader:
    """Reads the results topic in the background from its beginning; results by event id."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self.results: dict[str, Received] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ResultReader:
        await self._consumer.start()
        deadline = time.monotonic() + 20
        while not (parts := self._consumer.partitions_for_topic(self._topic)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no metadata for {self._topic}")
            await self._consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        tps = [TopicPartition(self._topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for record in records:
                    if record.value is None:
                        continue
                    result = orjson.loads(record.value)
                    self.results.setdefault(
                        str(result["id"]), Received(str(result["status"]), record.timestamp, now)
                    )

    async def wait_for(self, ids: Sequence[str], timeout_s: float) -> float:
        """Wait until every id has a result; returns the seconds waited (TimeoutError after)."""
        start = time.monotonic()
        while not all(i in self.results for i in ids):
            if time.monotonic() - start > timeout_s:
                missing = sum(i not in self.results for i in ids)
                raise TimeoutError(f"{missing} of {len(ids)} results missing after {timeout_s} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - start


# --- the service ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServeProcess:
    """`birdwatch serve` in a child process (optionally pinned to one CPU), logs to a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, cpu: int | None = None) -> None:
        self.port = free_port()
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        full = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BIRDWATCH_")},
            "BIRDWATCH_LOG_FORMAT": "json",
            **env,
            "BIRDWATCH_HTTP_PORT": str(self.port),
        }
        self.proc = subprocess.Popen(
            [BIRDWATCH, "serve"],
            env=full,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin_to(cpu),  # noqa: PLW1509 - sched_setaffinity only, no locks taken
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"http://127.0.0.1:{self.port}{path}") as resp,
        ):
            return resp.status, await resp.text()

    async def wait_ready(self, timeout_s: float = 120.0) -> float:
        start = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                status, _ = await self.get("/readyz")
                if status == 200:
                    return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"serve not ready after {timeout_s} s: {self.log_tail()}")
            await asyncio.sleep(0.2)

    async def histograms(self) -> dict[str, dict[str, HistogramSnapshot]]:
        """The stage-latency and batch-size histograms of /metrics, right now."""
        _, text = await self.get("/metrics")
        return {
            "stage": parse_histograms(text, "birdwatch_stage_seconds", "stage"),
            "batch": parse_histograms(text, "birdwatch_batch_size", "stage"),
        }

    async def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            # A child's exit has no asyncio event here; poll it (bounded by the deadline).
            while self.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            if self.proc.poll() is None:
                self.proc.kill()
        code = self.proc.wait(timeout=10)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def log_events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_bytes().splitlines():
            if line.startswith(b"{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    data = orjson.loads(line)
                    if data.get("event") == event:
                        found.append(data)
        return found
