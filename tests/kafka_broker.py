"""Where the Kafka tests find a real broker: an address given, testcontainers, or scripts/kafka.

testcontainers is used only when it can work without pulling: its images (the Kafka image and,
unless disabled, Ryuk) are already in the local Docker engine, or when asked for explicitly
(`BIRDWATCH_TEST_KAFKA_BROKER=testcontainers`). A Docker engine that answers is not enough: on a
machine without a registry (our ../shared/infra) `docker info` works but nothing can be pulled.
`BIRDWATCH_TEST_KAFKA_BROKER=script` always uses scripts/kafka.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[1]
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
    """Which broker the session uses; `asked` is BIRDWATCH_TEST_KAFKA_BROKER ("" = choose)."""
    if given:
        return "given"
    if asked:
        if asked not in CHOICES:
            raise ValueError(f"BIRDWATCH_TEST_KAFKA_BROKER must be one of {CHOICES}, not {asked!r}")
        return "testcontainers" if asked == "testcontainers" else "script"
    if docker_answers() and all(image_present(i) for i in images()):
        return "testcontainers"
    return "script"


@contextmanager
def kafka_broker(given: str) -> Iterator[str]:
    """Yield a bootstrap address: `given`, else testcontainers (when it can run), else
    scripts/kafka (started for the session unless it already runs)."""
    choice = choose_broker(
        given,
        os.environ.get("BIRDWATCH_TEST_KAFKA_BROKER", ""),
        lambda: docker("info"),
        lambda image: docker("image", "inspect", image),
        testcontainers_images,
    )
    if choice == "given":
        yield given
        return
    if choice == "testcontainers":
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
