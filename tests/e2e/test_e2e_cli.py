"""e2e.cli: arguments, and one clear line when what a run needs is not there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from e2e import cli
from e2e.handover import DISRUPTIONS
from e2e.k8s import PARTS
from e2e.overlay import GUARANTEES
from e2e.settings import REPO
from e2e.shell import Unavailable, require_cluster, require_docker


def parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def test_handover_defaults_follow_the_issue() -> None:
    args = parse("handover")
    assert args.rate == 20.0
    assert args.disruptions == DISRUPTIONS
    assert args.guarantee == GUARANTEES
    assert (args.replicas, args.steady, args.gap) == (2, 20.0, 45.0)
    assert args.plot_dir == REPO / "docs" / "img"


def test_handover_options_parse() -> None:
    args = parse(
        "handover",
        "--rate",
        "40",
        "--disruptions",
        "crash,rollout",
        "--guarantee",
        "exactly-once",
        "--keep",
        "--no-build",
    )
    assert (args.rate, args.disruptions, args.guarantee) == (
        40.0,
        ("crash", "rollout"),
        ("exactly_once",),
    )
    assert args.keep
    assert args.no_build
    assert parse("handover", "--guarantee", "both").guarantee == GUARANTEES


def test_k8s_and_compose_options_parse() -> None:
    assert parse("k8s").parts == PARTS
    assert parse("k8s", "--parts", "keda").parts == ("keda",)
    args = parse("compose", "--consumers", "2", "--burst", "50")
    assert (args.consumers, args.burst, args.keep) == (2, 50, False)


@pytest.mark.parametrize(
    "argv",
    [
        ("handover", "--rate", "0"),
        ("handover", "--rate", "-5"),
        ("handover", "--disruptions", "rollout,meteor"),
        ("handover", "--disruptions", ""),
        ("handover", "--guarantee", "at_most_once"),
        ("k8s", "--parts", "smoke,everything"),
        ("compose", "--consumers", "0"),
        ("deploy",),
    ],
)
def test_bad_arguments_stop_with_usage(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2


def test_a_plan_that_scales_to_nothing_stops_before_any_work(monkeypatch, capsys) -> None:
    monkeypatch.setenv("E2E_OUT_DIR", str(Path.cwd() / "out"))
    code = cli.main(["handover", "--replicas", "1", "--disruptions", "scale-down"])
    assert code == cli.EXIT_UNUSABLE
    assert "would leave no replica" in capsys.readouterr().err


def test_bad_environment_is_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("E2E_HTTP_PORT", "eighty")
    assert cli.main(["compose"]) == cli.EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "E2E_HTTP_PORT" in err


def test_no_docker_engine_fails_in_one_clear_line(tmp_path) -> None:
    """The real command, as `make e2e-compose` runs it, with DOCKER_HOST pointing nowhere."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "DOCKER_HOST": f"unix://{tmp_path}/no-such.sock",
        "E2E_OUT_DIR": str(tmp_path / "out"),
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "e2e", "compose"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == cli.EXIT_UNUSABLE
    errors = [line for line in proc.stderr.splitlines() if line.startswith("e2e")]
    assert len(errors) == 1, proc.stderr
    assert "cannot run" in errors[0]
    assert "docker" in errors[0].lower()


def test_no_cluster_fails_in_one_clear_line(tmp_path, monkeypatch) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
        "users: [{name: u, user: {}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    with pytest.raises(Unavailable, match=r"no Kubernetes cluster reachable|no kubectl"):
        require_cluster()


def test_missing_commands_are_named(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Unavailable, match="no docker command"):
        require_docker()
    with pytest.raises(Unavailable, match="no kubectl command"):
        require_cluster()
