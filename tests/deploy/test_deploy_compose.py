"""docker-compose.yml: valid for Compose, started in the right order, consumers scalable."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from consumer.classify import SAMPLE_IMAGE_URLS
from consumer.cli import build_parser
from consumer.config import ENV_PREFIX
from consumer.http import READY_PATH, make_app, start_http
from consumer.metrics import Metrics
from tests.deploy.tools import REPO, compose_spec_schema, find_compose, run, setting_env_names

BIRDWATCH_SERVICES = ("topics", "consumer", "publisher", "results")


@pytest.fixture(scope="module")
def services(compose_config: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose_config["services"]
    return found


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_file_validates_against_the_compose_json_schema(raw) -> None:
    """Besides `docker compose config` (the compose_config fixture): the published schema."""
    schema = compose_spec_schema()
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(raw)
    ]
    assert not errors, errors
    broken = {
        **raw,
        "services": {**raw["services"], "x": {"depends_on": {"kafka": {"condition": 1}}}},
    }
    assert list(validator.iter_errors(broken)), "the schema check can fail"


def test_stack_has_broker_topics_consumers_publisher_and_results(services) -> None:
    assert set(services) == {"kafka", *BIRDWATCH_SERVICES}


def test_broker_is_a_pinned_official_kafka_4_in_kraft_mode(services) -> None:
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"]), kafka["image"]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not [k for k in env if "ZOOKEEPER" in k]
    assert kafka["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")


def test_birdwatch_services_share_one_image_built_from_the_dockerfile(services) -> None:
    images = {services[name]["image"] for name in BIRDWATCH_SERVICES}
    assert len(images) == 1
    for name in BIRDWATCH_SERVICES:
        build = services[name]["build"]
        assert build["dockerfile"] == "deploy/Dockerfile"
        assert build["target"] == "lite"


def test_commands_parse_with_the_real_cli(services) -> None:
    parser = build_parser()
    topics = parser.parse_args(services["topics"]["command"])
    assert (topics.command, topics.topics_command, topics.partitions) == ("topics", "create", 6)
    assert parser.parse_args(services["consumer"]["command"]).command == "serve"
    publish = parser.parse_args(services["publisher"]["command"])
    assert publish.command == "publish"
    assert tuple(publish.urls) == SAMPLE_IMAGE_URLS
    results = parser.parse_args(services["results"]["command"])
    assert results.command == "results"
    assert results.from_beginning


def test_depends_on_conditions_order_the_start(services) -> None:
    def conditions(name: str) -> dict[str, str]:
        return {dep: v["condition"] for dep, v in services[name].get("depends_on", {}).items()}

    assert conditions("topics") == {"kafka": "service_healthy"}
    assert conditions("consumer") == {
        "kafka": "service_healthy",
        "topics": "service_completed_successfully",
    }
    assert conditions("publisher") == {"topics": "service_completed_successfully"}
    assert conditions("results") == {"topics": "service_completed_successfully"}
    for one_shot in ("topics", "publisher"):
        assert services[one_shot].get("restart", "no") == "no"


def test_consumer_scales_with_a_shared_model_cache(services, compose_config) -> None:
    consumer = services["consumer"]
    assert "container_name" not in consumer
    for port in consumer.get("ports", []):
        assert not port.get("published"), "a fixed host port stops --scale"
    env = consumer["environment"]
    mounts = {v["target"]: v for v in consumer["volumes"]}
    cache = mounts[env["BIRDWATCH_MODEL_CACHE_DIR"]]
    assert cache["type"] == "volume"
    assert cache["source"] in compose_config["volumes"]
    assert int(env["BIRDWATCH_HTTP_PORT"]) in {p["target"] for p in consumer["ports"]}


def test_consumer_healthcheck_asks_for_readiness_on_its_port(services) -> None:
    consumer = services["consumer"]
    script = consumer["healthcheck"]["test"][-1]
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", script)
    assert match, script
    assert match.group(1) == consumer["environment"]["BIRDWATCH_HTTP_PORT"]
    assert match.group(2) == READY_PATH
    compile(script, "healthcheck", "exec")
    # Longer than the model may take to load, so a slow download is not "unhealthy".
    assert consumer["healthcheck"]["start_period"] in ("5m0s", "300s")
    grace = int(consumer["stop_grace_period"].rstrip("s"))
    assert grace > 30, "longer than BIRDWATCH_SHUTDOWN_TIMEOUT_S (default 30)"


def test_services_without_http_have_no_health_check(services) -> None:
    """The image's HEALTHCHECK asks /healthz, which only `serve` answers: every other Birdwatch
    service disables it, or it is "unhealthy" for ever (the results follower, issue 9)."""
    parser = build_parser()
    for name in BIRDWATCH_SERVICES:
        command = parser.parse_args(services[name]["command"]).command
        check = services[name].get("healthcheck", {})
        if command == "serve":
            assert not check.get("disable"), name
        else:
            assert check.get("disable") is True, name


async def test_consumer_healthcheck_runs_against_the_real_endpoints(services) -> None:
    script = services["consumer"]["healthcheck"]["test"][-1]
    state = {"ready": False}
    app = make_app(Metrics(), lambda: True, lambda: state["ready"])
    runner = await start_http(app, 0, host="127.0.0.1")
    port = runner.addresses[0][1]
    local = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", script)
    try:
        not_ready = await _exit_code([sys.executable, "-c", local])
        state["ready"] = True
        ready = await _exit_code([sys.executable, "-c", local])
    finally:
        await runner.cleanup()
    assert (not_ready, ready) == (1, 0)


async def _exit_code(argv: list[str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(proc.wait(), timeout=30)


def test_compose_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: Compose refuses an unknown depends_on condition."""
    compose = find_compose()
    assert compose is not None
    broken = tmp_path / "compose.yml"
    broken.write_text(
        "services:\n  a:\n    image: busybox:1.36\n    depends_on:\n"
        "      b: {condition: service_started_eventually}\n  b:\n    image: busybox:1.36\n"
    )
    proc = run([*compose, "-f", str(broken), "--project-directory", str(tmp_path), "config"])
    assert proc.returncode != 0


def test_settings_come_from_an_optional_env_file(raw) -> None:
    for name in BIRDWATCH_SERVICES:
        env_files = raw["services"][name]["env_file"]
        assert env_files == [{"path": ".env", "required": False}]


def test_every_birdwatch_variable_is_a_real_setting(services) -> None:
    names = {
        key
        for name in BIRDWATCH_SERVICES
        for key in services[name].get("environment", {})
        if key.startswith(ENV_PREFIX)
    }
    assert names <= setting_env_names(), names - setting_env_names()


def test_containers_are_hardened_like_the_pods(services) -> None:
    for name in BIRDWATCH_SERVICES:
        service = services[name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
