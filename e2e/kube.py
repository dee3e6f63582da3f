"""kubectl for the e2e runs: deploy the overlay, run the agent pod, scale, disrupt, tear down."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from e2e import agents
from e2e.cpu import CGROUP_CPU_SECONDS
from e2e.settings import Environment
from e2e.shell import E2EError, run, say, wait_for

DEPLOYMENT = "birdwatch"
AGENT_POD = "e2e-agent"
BOOTSTRAP = "kafka.birdwatch-e2e.svc:9092"
PAUSED = "autoscaling.keda.sh/paused-replicas"


def kill_script(program: str = "birdwatch", command: str = "serve") -> str:
    """Python that SIGKILLs every process running `program command` that it can see: in a pod
    with a shared PID namespace, the service process (a crash, as the OOM killer or a segfault
    would cause). Prints the pids it killed."""
    return (
        "import os, signal\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        argv = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
        "    except OSError:\n"
        "        continue\n"
        f"    if any(a.endswith(b'/{program}') or a == b'{program}' for a in argv[:2])"
        f" and b'{command}' in argv:\n"
        "        os.kill(int(pid), signal.SIGKILL)\n"
        "        print(pid)\n"
    )


@dataclass
class Cluster:
    namespace: str

    def kubectl(
        self, *args: str, timeout: float = 300, check: bool = True, quiet: bool = False
    ) -> str:
        return run(
            ["kubectl", "-n", self.namespace, *args], timeout=timeout, check=check, quiet=quiet
        ).stdout

    def get(self, *what: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.kubectl("get", *what, "-o", "json", quiet=True))
        return found

    # --- the deployment -------------------------------------------------------------------

    def replicas(self) -> tuple[int, int]:
        """(desired, ready) replicas of the consumers' Deployment."""
        deployment = self.get("deployment", DEPLOYMENT)
        return deployment["spec"].get("replicas", 0), deployment["status"].get("readyReplicas", 0)

    def consumer_pods(self) -> list[dict[str, Any]]:
        pods = self.get("pods", "-l", "app.kubernetes.io/component=consumer")["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def settled(self, replicas: int) -> bool:
        """`replicas` ready consumer pods and no other (none starting, none terminating)."""
        pods = self.get("pods", "-l", "app.kubernetes.io/component=consumer")["items"]
        ready = [
            p
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        return len(pods) == replicas and len(ready) == replicas

    def pause_at(self, replicas: int) -> None:
        """KEDA keeps the Deployment at `replicas` until resumed."""
        self.kubectl("annotate", "--overwrite", "scaledobject", DEPLOYMENT, f"{PAUSED}={replicas}")

    def resume_autoscaling(self) -> None:
        self.kubectl("annotate", "scaledobject", DEPLOYMENT, f"{PAUSED}-")

    def wait_settled(self, replicas: int, timeout: float = 420) -> float:
        return wait_for(
            f"{replicas} ready consumer pod(s)", lambda: self.settled(replicas), timeout
        )

    def rollout_restart(self, timeout: float = 600) -> None:
        self.kubectl("rollout", "restart", f"deployment/{DEPLOYMENT}")
        self.kubectl(
            "rollout",
            "status",
            f"deployment/{DEPLOYMENT}",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )

    def cpu_seconds(self, pod: str) -> float:
        """CPU seconds the consumer container of `pod` used so far (its cgroup)."""
        script = ["python", "-c", CGROUP_CPU_SECONDS]
        return float(self.kubectl("exec", pod, "-c", "consumer", "--", *script, quiet=True))

    def delete_pod(self, name: str) -> None:
        self.kubectl("delete", "pod", name, "--wait=false")

    def crash(self, name: str) -> int:
        """SIGKILL the service process of a pod; its restart count before the kill."""
        pod = self.get("pod", name)
        restarts = int(pod["status"]["containerStatuses"][0]["restartCount"])
        killed = self.kubectl("exec", name, "-c", "consumer", "--", "python", "-c", kill_script())
        if not killed.split():
            raise E2EError(f"no service process found in pod {name}")
        return restarts

    def restarted(self, name: str, before: int) -> bool:
        status = self.get("pod", name)["status"]["containerStatuses"][0]
        return int(status["restartCount"]) > before and bool(status.get("ready"))

    # --- the agent pod ----------------------------------------------------------------------

    def start_agent(self, image: str) -> agents.PodAgent:
        """A pod with the Birdwatch image running agent.py (from a ConfigMap) idle, for
        `kubectl exec`; restricted like the consumers."""
        configmap = run(
            [
                "kubectl",
                "-n",
                self.namespace,
                "create",
                "configmap",
                "e2e-agent",
                f"--from-file=agent.py={agents.AGENT_FILE}",
                "--dry-run=client",
                "-o",
                "json",
            ],
            quiet=True,
        ).stdout
        run(["kubectl", "apply", "-f", "-"], stdin=configmap)
        run(["kubectl", "apply", "-f", "-"], stdin=json.dumps(agent_pod(self.namespace, image)))
        self.kubectl(
            "wait", "--for=condition=Ready", f"pod/{AGENT_POD}", "--timeout=180s", timeout=200
        )
        return agents.PodAgent(BOOTSTRAP, self.namespace, AGENT_POD)

    # --- diagnostics ------------------------------------------------------------------------

    def warnings(self) -> list[str]:
        """The namespace's latest Warning events, for a wait that timed out."""
        found = self.kubectl(
            "get", "events", "--field-selector=type=Warning", "-o", "json", check=False, quiet=True
        )
        try:
            return latest_warnings(json.loads(found or "{}"))
        except json.JSONDecodeError:
            return []

    def dump(self, folder: Path) -> None:
        """Events and consumer logs of a failed run, for the reader of its one-line error."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "events.txt").write_text(
            self.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False, quiet=True)
        )
        (folder / "pods.txt").write_text(
            self.kubectl("get", "pods", "-o", "wide", check=False, quiet=True)
        )
        logs = self.kubectl(
            "logs",
            "-l",
            "app.kubernetes.io/component=consumer",
            "--tail=200",
            "--prefix",
            check=False,
            quiet=True,
        )
        (folder / "consumers.log").write_text(logs)
        say(f"diagnostics in {folder}")


def agent_pod(namespace: str, image: str) -> dict[str, Any]:
    hardened = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": AGENT_POD,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "e2e-agent"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 5,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "agent",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "/agent/agent.py", "idle"],
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "128Mi"},
                        "limits": {"cpu": "1", "memory": "512Mi"},
                    },
                    "securityContext": hardened,
                    "volumeMounts": [
                        {"name": "agent", "mountPath": "/agent", "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (the pod's own emptyDir),
                    ],
                }
            ],
            "volumes": [
                {"name": "agent", "configMap": {"name": "e2e-agent"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            ],
        },
    }


class Deployed:
    """The e2e overlay applied into a fresh namespace; the namespace deleted on exit (also on
    failure, after saving diagnostics) unless kept."""

    def __init__(self, env: Environment, kustomization: Path, keep: bool = False) -> None:
        self.env = env
        self.kustomization = kustomization
        self.keep = keep
        self.cluster = Cluster("birdwatch-e2e")

    def __enter__(self) -> Cluster:
        delete_namespace(self.cluster.namespace)
        started = time.monotonic()
        run(["kubectl", "apply", "-k", str(self.kustomization)], timeout=120)
        try:
            self._wait_whole()
        except E2EError as exc:
            # A timed-out wait says nothing of why; the namespace's warnings usually do (an
            # image the node lost, unschedulable requests, a failing probe).
            seen = self.cluster.warnings()
            raise E2EError(f"{exc}; warnings: {' | '.join(seen)}" if seen else str(exc)) from exc
        say(f"deployed in {time.monotonic() - started:.0f} s")
        return self.cluster

    def _wait_whole(self) -> None:
        self.cluster.kubectl("rollout", "status", "deployment/kafka", "--timeout=300s", timeout=330)
        self.cluster.kubectl(
            "wait",
            "--for=condition=complete",
            "job/birdwatch-topics",
            "--timeout=300s",
            timeout=330,
        )
        self.cluster.kubectl(
            "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=420s", timeout=450
        )

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            self.cluster.dump(self.env.out_dir / "failed")
        if self.keep:
            say(f"kept: kubectl delete namespace {self.cluster.namespace} to remove")
            return
        delete_namespace(self.cluster.namespace)


def latest_warnings(events: dict[str, Any], limit: int = 3) -> list[str]:
    """The `limit` most recent distinct Warning messages of a `kubectl get events -o json`,
    newest first, each as "object: reason: message"."""

    def when(event: dict[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime") or "")

    found: list[str] = []
    for event in sorted(events.get("items", []), key=when, reverse=True):
        involved = event.get("involvedObject", {})
        line = (
            f"{involved.get('kind', '?').lower()}/{involved.get('name', '?')}: "
            f"{event.get('reason', '')}: {' '.join(str(event.get('message', '')).split())}"
        )
        if line not in found:
            found.append(line)
        if len(found) == limit:
            break
    return found


def delete_namespace(namespace: str) -> None:
    run(
        [
            "kubectl",
            "delete",
            "namespace",
            namespace,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=300s",
        ],
        timeout=330,
    )
