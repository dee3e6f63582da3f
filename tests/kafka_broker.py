"""Where the Kafka tests find a real broker: an address given, testcontainers, or scripts/kafka."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@contextmanager
def kafka_broker(given: str) -> Iterator[str]:
    """Yield a bootstrap address: `given`, else a testcontainers broker, else scripts/kafka."""
    if given:
        yield given
        return
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    script = REPO / "scripts" / "kafka"
    env = {**os.environ, "KAFKA_PORT": os.environ.get("BIRDWATCH_TEST_KAFKA_PORT", "9092")}
    already = subprocess.run([script, "status"], env=env, capture_output=True, check=False)
    if already.returncode != 0:
        subprocess.run([script, "start"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{env['KAFKA_PORT']}"
    finally:
        if already.returncode != 0:
            subprocess.run([script, "stop"], env=env, check=False, stdout=subprocess.DEVNULL)
