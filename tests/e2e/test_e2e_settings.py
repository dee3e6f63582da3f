"""e2e.settings: where the runs point, from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.settings import DEFAULT_IMAGE, DEFAULT_PORT, REPO, Environment, is_address


def test_defaults_suit_kind_on_docker_desktop() -> None:
    env = Environment.from_env({})
    assert env.load_image == ("kind", "load", "docker-image")
    assert env.host == "host.docker.internal"
    assert env.bind == "0.0.0.0"
    assert env.port == DEFAULT_PORT
    assert env.image == DEFAULT_IMAGE
    assert env.data_dir == REPO.parent / "shared" / "data"
    assert env.out_dir == REPO / ".cache" / "e2e"
    assert env.base_url == f"http://host.docker.internal:{DEFAULT_PORT}"


def test_the_infra_environment_is_picked_up() -> None:
    env = Environment.from_env(
        {"INFRA_LOAD_IMAGE": "infra-load-image", "INFRA_HOST_IP": "10.213.0.1"}
    )
    assert env.load_image == ("infra-load-image",)
    assert (env.host, env.bind) == ("10.213.0.1", "10.213.0.1")


def test_e2e_variables_win() -> None:
    env = Environment.from_env(
        {
            "INFRA_LOAD_IMAGE": "infra-load-image",
            "INFRA_HOST_IP": "10.213.0.1",
            "E2E_LOAD_IMAGE": "kind load docker-image --name e2e",
            "E2E_HOST_IP": "172.18.0.1",
            "E2E_BIND_IP": "0.0.0.0",
            "E2E_HTTP_PORT": "9000",
            "E2E_DATA_DIR": "/data",
            "BIRDWATCH_REAL_MODEL_DIR": "/other",
            "E2E_IMAGE": "registry.local:5000/birdwatch:test-lite",
            "E2E_OUT_DIR": "/tmp/out",
        }
    )
    assert env.load_image == ("kind", "load", "docker-image", "--name", "e2e")
    assert (env.host, env.bind, env.port) == ("172.18.0.1", "0.0.0.0", 9000)
    assert env.data_dir == Path("/data")
    assert env.image == "registry.local:5000/birdwatch:test-lite"
    assert env.out_dir == Path("/tmp/out")


def test_the_real_model_dir_of_the_tests_is_the_data_fallback() -> None:
    assert Environment.from_env({"BIRDWATCH_REAL_MODEL_DIR": "/d"}).data_dir == Path("/d")


def test_an_ipv6_host_is_bracketed() -> None:
    assert (
        Environment.from_env({"E2E_HOST_IP": "fd00::1"}).base_url
        == f"http://[fd00::1]:{DEFAULT_PORT}"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"E2E_HTTP_PORT": "http"}, "E2E_HTTP_PORT"),
        ({"E2E_HTTP_PORT": "70000"}, "E2E_HTTP_PORT"),
        ({"E2E_IMAGE": "registry.local:5000/birdwatch"}, "explicit tag"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env, message) -> None:
    with pytest.raises(ValueError, match=message):
        Environment.from_env(env)


def test_is_address() -> None:
    assert is_address("10.213.0.1")
    assert is_address("::1")
    assert not is_address("host.docker.internal")
