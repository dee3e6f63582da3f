"""The Kafka side of the stream scenarios: broker, topics, a paced publisher, a result reader,
and `birdwatch serve` processes with their endpoints. Every wait is bounded.

The Kafka tests (tests/kafka_support.py) build on the same pieces: topic creation, whole-topic
assignment, `ServeProcess`, `free_port` and `wait_until`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import Backend, BenchContext
from bench.paths import BIRDWATCH, REPO
from bench.procs import pin_to
from bench.stats import HistogramSnapshot, metric_value, parse_histograms

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
    home = os.environ.get("KAFKA_HOME_DIR") or str(REPO / ".cache" / "kafka")
    pid_file = Path(home) / "kafka.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


# --- topics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """Topic and group names private to one benchmark run (or one test: tests/kafka_support.py)."""

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

    @property
    def names(self) -> tuple[str, str, str]:
        """The three topics."""
        return self.input, self.results, self.dlq

    def settings(self) -> dict[str, object]:
        """Settings overrides naming these topics and this group."""
        return {
            "input_topic": self.input,
            "results_topic": self.results,
            "dlq_topic": self.dlq,
            "group_id": self.group,
        }

    def env(self) -> dict[str, str]:
        """The same, as the environment of a `birdwatch serve`."""
        return {f"BIRDWATCH_{k.upper()}": str(v) for k, v in self.settings().items()}


async def create_topics(
    bootstrap: str, topics: Iterable[str], partitions: int, timeout_s: float = 30.0
) -> None:
    """Create `topics` and wait until every partition has a leader."""
    wanted = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in wanted])
        deadline = time.monotonic() + timeout_s
        while True:
            described = await admin.describe_topics(wanted)
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
            await admin.delete_topics(list(topics.names))
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


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout_s: float, what: str, step: float = 0.1
) -> float:
    """Poll `condition` until true; returns the seconds it took, TimeoutError naming `what`."""
    start = time.monotonic()
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(step)


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


def whole_topic_consumer(bootstrap: str, isolation_level: str) -> AIOKafkaConsumer:
    """A consumer outside any group that commits nothing: for `assign_whole_topic`."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )


async def assign_whole_topic(
    consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 20.0
) -> list[TopicPartition]:
    """Assign every partition of `topic` to a started `whole_topic_consumer`, from the
    beginning, once its metadata is known; returns the partitions."""
    deadline = time.monotonic() + timeout_s
    while not (parts := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no metadata for {topic}")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return tps


@dataclass(frozen=True)
class Received:
    status: str
    produced_ms: int  # the result record's timestamp: when the service produced it
    read_at: float


class ResultReader:
    """Reads the results topic in the background from its beginning: the first result of each
    event id, and how many more came (redeliveries)."""

    def __init__(
        self, bootstrap: str, topic: str, isolation_level: str = "read_uncommitted"
    ) -> None:
        self._topic = topic
        self._consumer = whole_topic_consumer(bootstrap, isolation_level)
        self.results: dict[str, Received] = {}
        self.duplicates = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ResultReader:
        await self._consumer.start()
        await assign_whole_topic(self._consumer, self._topic)
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
                    event_id = str(result["id"])
                    if event_id in self.results:
                        self.duplicates += 1
                    else:
                        self.results[event_id] = Received(
                            str(result["status"]), record.timestamp, now
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
    """A TCP port of 127.0.0.1 free right now (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(
    ctx: BenchContext, backend: Backend, topics: Topics, cache_dir: str, *, shutdown_timeout_s: int
) -> dict[str, str]:
    """What a scenario's `birdwatch serve` runs with: the site's model and labels, the run's own
    topics and group, the broker, a private model cache and a bounded shutdown."""
    assert ctx.bootstrap is not None
    return {
        **ctx.site.service_env(backend),
        **topics.env(),
        "BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS": ctx.bootstrap,
        "BIRDWATCH_MODEL_CACHE_DIR": cache_dir,
        "BIRDWATCH_SHUTDOWN_TIMEOUT_S": str(shutdown_timeout_s),
    }


class ServeProcess:
    """`birdwatch serve` (or another `command` running it) in a child process, optionally pinned
    to one CPU: output to `log_path`, endpoints on a free port. It inherits this process's
    environment except BIRDWATCH_*, which come from `env` (JSON logs unless `env` says else)."""

    # A TensorFlow model takes tens of seconds to load on this busy 2-core machine.
    ready_timeout_s = 120.0

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        cpu: int | None = None,
        command: Sequence[str] = (BIRDWATCH, "serve"),
    ) -> None:
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
            list(command),
            env=full,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin_to(cpu),  # noqa: PLW1509 - sched_setaffinity only, no locks taken
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(self.url(path)) as resp,
        ):
            return resp.status, await resp.text()

    async def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            status, _ = await self.get("/readyz")
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        return status == 200

    async def wait_ready(self, timeout_s: float | None = None) -> float:
        """Wait for /readyz to answer 200 (`ready_timeout_s` by default); returns the seconds
        waited. RuntimeError when the process exits first; both errors carry the log's tail."""
        limit = self.ready_timeout_s if timeout_s is None else timeout_s
        try:
            return await wait_until(self._ready, limit, "serve /readyz", step=0.2)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        _, text = await self.get("/metrics")
        return metric_value(text, name, **labels)

    async def histograms(self) -> dict[str, dict[str, HistogramSnapshot]]:
        """The stage-latency and batch-size histograms of /metrics, right now."""
        _, text = await self.get("/metrics")
        return {
            "stage": parse_histograms(text, "birdwatch_stage_seconds", "stage"),
            "batch": parse_histograms(text, "birdwatch_batch_size", "stage"),
        }

    async def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait for the exit code; after `timeout_s`, SIGKILL and TimeoutError."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await wait_until(lambda: self.proc.poll() is not None, timeout_s, "serve exit")
            except TimeoutError:
                self.kill()
                raise
        return self.proc.returncode

    async def stop(self, timeout_s: float = 30.0) -> int:
        """`terminate`, where a SIGKILL after `timeout_s` is no error, then `close`; returns the
        exit code."""
        with contextlib.suppress(TimeoutError):
            await self.terminate(timeout_s)
        self.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL when still running (a crash), reap it, and close our handle on its log."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    def close(self) -> None:
        """Cleanup for a `finally`: kill the process if it still runs; the log stays readable."""
        self.kill()

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far, or only those of `event`."""
        found = []
        for line in self.log_path.read_bytes().splitlines():
            if line.startswith(b"{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    data = orjson.loads(line)
                    if event is None or data.get("event") == event:
                        found.append(data)
        return found

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])
