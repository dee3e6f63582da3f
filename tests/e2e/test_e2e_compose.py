"""e2e.compose: what the run changes in docker-compose.yml, checked by Compose itself."""

from __future__ import annotations

import json
from pathlib import Path

from e2e.compose import override
from e2e.dataserver import Site
from tests.deploy.tools import REPO, find_compose, run

SITE = Site(Path("/srv"), "http://host.docker.internal:8765")


def test_override_points_consumers_at_the_host_and_one_cpu(tmp_path) -> None:
    compose = find_compose()
    assert compose is not None
    path = tmp_path / "e2e.json"
    path.write_text(json.dumps(override(SITE)))
    empty = tmp_path / "empty.env"
    empty.write_text("")
    cmd = [
        *compose,
        "--project-directory",
        str(REPO),
        "--env-file",
        str(empty),
        "-f",
        str(REPO / "docker-compose.yml"),
        "-f",
        str(path),
        "config",
        "--format",
        "json",
    ]
    proc = run(cmd)
    assert proc.returncode == 0, proc.stderr
    consumer = json.loads(proc.stdout)["services"]["consumer"]
    env = consumer["environment"]
    assert (
        env["BIRDWATCH_MODEL_URL"]
        == "http://host.docker.internal:8765/aiy_birds_v1/birds_V1_3.tflite"
    )
    assert env["BIRDWATCH_ALLOW_PRIVATE_NETWORKS"] == "true"
    assert (env["BIRDWATCH_INFERENCE_THREADS"], env["BIRDWATCH_DECODE_THREADS"]) == ("1", "1")
    # The compose file's own settings stay (merged, not replaced).
    assert env["BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert float(consumer["cpus"]) == 1.0
    assert (
        "host.docker.internal=host-gateway" in consumer["extra_hosts"]
        or "host.docker.internal:host-gateway" in consumer["extra_hosts"]
    )
