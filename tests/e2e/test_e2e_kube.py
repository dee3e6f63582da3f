"""e2e.kube: the crash that the handover run causes, and the agent pod."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

from e2e import kube


def test_kill_script_kills_exactly_the_service_process(tmp_path) -> None:
    """Run it for real against a stand-in named uniquely (the same command in a pod finds the
    one `birdwatch serve` of the pod's shared PID namespace)."""
    name = f"birdwatch-e2e-{uuid.uuid4().hex[:8]}"
    program = tmp_path / name
    program.write_text("import time\ntime.sleep(120)\n")
    service = subprocess.Popen([sys.executable, str(program), "serve"])
    bystander = subprocess.Popen([sys.executable, str(program), "results"])
    try:
        time.sleep(0.5)
        proc = subprocess.run(
            [sys.executable, "-c", kube.kill_script(name, "serve")],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert proc.stdout.split() == [str(service.pid)]
        assert service.wait(timeout=10) == -9
        assert bystander.poll() is None
    finally:
        for child in (service, bystander):
            child.kill()
            child.wait()


def test_agent_pod_runs_the_agent_idle_with_the_image() -> None:
    pod = kube.agent_pod("ns", "birdwatch:0.1.0-lite")
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python", "/agent/agent.py", "idle"]
    assert container["image"] == "birdwatch:0.1.0-lite"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == "e2e-agent"


def warning(name: str, reason: str, message: str, at: str) -> dict[str, object]:
    return {
        "involvedObject": {"kind": "Pod", "name": name},
        "reason": reason,
        "message": message,
        "lastTimestamp": at,
    }


def test_latest_warnings_are_the_newest_distinct_ones() -> None:
    sandbox = 'failed to get sandbox image "docker.io/local/pause:3.10"'
    events = {
        "items": [
            warning("kafka-1", "FailedCreatePodSandBox", sandbox, "2026-11-27T15:44:40Z"),
            warning("kafka-1", "FailedCreatePodSandBox", sandbox, "2026-11-27T15:44:46Z"),
            warning(
                "birdwatch-1",
                "FailedScheduling",
                "0/1 nodes:\n Insufficient cpu",
                "2026-11-27T15:40:00Z",
            ),
            warning("old", "BackOff", "restarting", "2026-11-27T15:00:00Z"),
        ]
    }
    assert kube.latest_warnings(events, limit=2) == [
        f"pod/kafka-1: FailedCreatePodSandBox: {sandbox}",
        "pod/birdwatch-1: FailedScheduling: 0/1 nodes: Insufficient cpu",
    ]
    assert kube.latest_warnings({}) == []
