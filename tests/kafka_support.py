"""Helpers for the tests that talk to the real Kafka broker.

Each test gets its own topics and group (`Topics.unique` of the test kit); records are produced
and read with the kit's plain aiokafka helpers (`consumer.testing.topics`); `birdwatch serve`
runs either in-process (`InProcessService`, so coverage counts) or as a subprocess
(`ServeProcess`, so it can be SIGKILLed). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition

from consumer.config import Settings
from consumer.kafka.service import KafkaService, ServiceState
from consumer.metrics import Metrics
from consumer.runtime import Runtime
from consumer.testing import serve as kit_serve
from consumer.testing.topics import Topics
from tests.conftest import LoopbackServer, TinyModels

REPO = Path(__file__).resolve().parents[1]


# --- the model on the loopback server ----------------------------------------------------------


def serve_model(server: LoopbackServer, models: TinyModels) -> dict[str, str]:
    """Put the tiny tflite model and labels on `server`; returns the settings naming them."""
    server.add_bytes("/model/birds.tflite", models.tflite.read_bytes())
    server.add_bytes("/labels.csv", models.labels_csv, "text/csv")
    return {
        "model_url": server.url("/model/birds.tflite"),
        "labels_url": server.url("/labels.csv"),
    }


# --- the service in this process ----------------------------------------------------------------


@dataclass
class InProcessService:
    """A KafkaService running as a task of the test's event loop."""

    settings: Settings
    runtime: Runtime
    service: KafkaService
    metrics: Metrics
    state: ServiceState
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings) -> InProcessService:
        runtime = Runtime(settings, progress=False)
        await runtime.__aenter__()
        try:
            model = await runtime.load_model()
            metrics, state = Metrics(), ServiceState(model_loaded=True)
            service = KafkaService(settings, runtime, model, metrics, state)
            await asyncio.wait_for(service.start(), 30)
        except BaseException:
            await runtime.__aexit__(None, None, None)
            raise
        me = cls(settings, runtime, service, metrics, state)
        me.task = asyncio.create_task(service.run(me.stop_event))
        return me

    @property
    def owned(self) -> set[TopicPartition]:
        return set(self.service.owned)

    def sample(self, name: str, **labels: str) -> float:
        """A sample of the service's metrics registry (0 when absent)."""
        value = self.metrics.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value

    def in_flight(self) -> int:
        """Records the member holds whose outcome is not yet durable."""
        return self.service.in_flight

    def count(self, status: str) -> float:
        return self.sample("birdwatch_results_produced_total", status=status)

    async def stop(self, timeout_s: float = 60.0) -> float:
        """Graceful stop (what SIGTERM does); returns the seconds it took."""
        start = time.monotonic()
        self.stop_event.set()
        try:
            if self.task is not None:
                await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        finally:
            await self.runtime.__aexit__(None, None, None)
        return time.monotonic() - start


# --- the service as a subprocess -----------------------------------------------------------------


def serve_env(
    bootstrap: str, names: Topics, model: Mapping[str, str], **extra: object
) -> dict[str, str]:
    """Environment for `birdwatch serve` (without BIRDWATCH_HTTP_PORT, added by ServeProcess)."""
    values: dict[str, object] = {
        "kafka_bootstrap_servers": bootstrap,
        "allow_private_networks": "true",
        "model_cache_dir": "",
        "inference_threads": 1,
        "decode_threads": 1,
        "log_format": "json",
        **model,
        **names.settings(),
        **extra,
    }
    return {f"BIRDWATCH_{k.upper()}": str(v) for k, v in values.items()}


def serve_with_slow_commits(delay_s: float) -> None:
    """Child-process entry point: `birdwatch serve` whose transactions each stay open `delay_s`
    longer, their results already written, before the commit is sent (a slow client)."""
    real_commit = AIOKafkaProducer.commit_transaction

    async def commit_later(self: AIOKafkaProducer) -> None:
        await asyncio.sleep(delay_s)
        await real_commit(self)

    AIOKafkaProducer.commit_transaction = commit_later
    from consumer import cli

    sys.exit(cli.main(["serve"]))


class ServeProcess(kit_serve.ServeProcess):
    """`birdwatch serve` in a child process, logs to a file, endpoints on a free port; with
    `slow_commits_s`, every transaction of it stays open that much longer before its commit."""

    ready_timeout_s = 60.0

    def __init__(
        self, env: Mapping[str, str], log_path: Path, slow_commits_s: float | None = None
    ) -> None:
        if slow_commits_s is None:
            super().__init__(env, log_path)
            return
        code = f"from tests.kafka_support import serve_with_slow_commits as s; s({slow_commits_s})"
        path = env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))
        super().__init__(
            {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), path]))},
            log_path,
            command=[sys.executable, "-c", code],
        )
