"""deploy/k8s/overlays/e2e: the application with its own broker and topics, as `make e2e-k8s`
applies it and as a kind user could apply it as is. Restricted Pod Security for every pod,
the base's hardening kept, the pieces pointing at each other, and sized for a 2-core node."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from consumer.cli import build_parser
from e2e import kube, overlay, settings
from tests.deploy.test_deploy_k8s import config, consumer, pod_spec, settings_of
from tests.deploy.tools import REPO, objects_of, one

E2E = "overlays/e2e"
Docs = list[dict[str, Any]]
# Volume types the "restricted" Pod Security Standard allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# What a 2-core node leaves for workloads after CoreDNS (50m) and KEDA (3 x 100m).
NODE_CPU_MILLI = 2000 - 50 - 300


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Why a pod spec would be refused in a namespace that enforces "restricted" (the checks
    of the Pod Security Standard that a spec can fail)."""
    found = []
    pod = spec.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(field)
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {kinds}")
    for container in spec.get("initContainers", []) + spec["containers"]:
        name = container["name"]
        sc = container.get("securityContext", {})
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation not false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            found.append(f"{name}: capabilities not dropped")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities added")
        if not sc.get("runAsNonRoot", pod.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot not set")
        if sc.get("runAsUser", pod.get("runAsUser")) == 0:
            found.append(f"{name}: runs as root")
        seccomp = sc.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccomp {seccomp}")
    return found


def pod_specs(docs: Docs) -> dict[str, dict[str, Any]]:
    found = {}
    for kind in ("Deployment", "Job"):
        for obj in objects_of(docs, kind):
            found[f"{kind}/{obj['metadata']['name']}"] = obj["spec"]["template"]["spec"]
    return found


def milli(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


@pytest.fixture(scope="module")
def docs(rendered) -> Docs:
    found: Docs = rendered[E2E]
    return found


def app_docs(docs: Docs) -> Docs:
    """The objects of the application only (the broker's Deployment left out)."""
    return [d for d in docs if not (d["kind"] == "Deployment" and d["metadata"]["name"] == "kafka")]


def test_restricted_check_catches_what_the_admission_refuses() -> None:
    spec = kube.agent_pod("ns", "birdwatch:1")["spec"]
    assert restricted_violations(spec) == []
    container = spec["containers"][0]
    for broken in (
        {**spec, "hostPID": True},
        {**spec, "containers": [{**container, "securityContext": {}}]},
        {**spec, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
    ):
        assert restricted_violations(broken), broken


def test_namespace_enforces_restricted_and_holds_everything(docs) -> None:
    namespace = one(docs, "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespace["metadata"]["name"] == overlay.NAMESPACE
    for obj in docs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == overlay.NAMESPACE, obj["metadata"]


def test_every_pod_meets_restricted_pod_security(docs) -> None:
    specs = pod_specs(docs)
    assert set(specs) == {"Deployment/birdwatch", "Deployment/kafka", "Job/birdwatch-topics"}
    specs["Pod/e2e-agent"] = kube.agent_pod(overlay.NAMESPACE, settings.DEFAULT_IMAGE)["spec"]
    for name, spec in specs.items():
        assert restricted_violations(spec) == [], name
        assert spec["automountServiceAccountToken"] is False, name


def test_consumers_keep_the_base_hardening(docs) -> None:
    app = app_docs(docs)
    sc = consumer(app)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert pod_spec(app)["securityContext"]["runAsUser"] > 0
    # What the crash measurement needs: the service is not PID 1 of its own namespace.
    assert pod_spec(app)["shareProcessNamespace"] is True


def test_images_are_tagged_and_never_pulled_when_present(docs) -> None:
    for name, spec in pod_specs(docs).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            image = container["image"]
            assert image.rpartition(":")[2] not in ("", "latest"), (name, image)
            assert container["imagePullPolicy"] in ("IfNotPresent", "Never"), name
    images = {c["image"] for s in pod_specs(docs).values() for c in s["containers"]}
    assert images == {settings.DEFAULT_IMAGE, settings.KAFKA_IMAGE}
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert compose["services"]["kafka"]["image"] == settings.KAFKA_IMAGE


def test_consumers_keda_and_broker_agree_on_the_address(docs) -> None:
    app = app_docs(docs)
    bootstrap = config(app)["BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap == kube.BOOTSTRAP
    trigger = one(docs, "ScaledObject")["spec"]["triggers"][0]["metadata"]
    assert trigger["bootstrapServers"] == bootstrap
    broker = next(d for d in objects_of(docs, "Deployment") if d["metadata"]["name"] == "kafka")
    env = {
        e["name"]: e["value"] for e in broker["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{bootstrap}"
    host, port = bootstrap.rsplit(":", 1)
    service = next(s for s in objects_of(docs, "Service") if s["metadata"]["name"] == "kafka")
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert [p["port"] for p in service["spec"]["ports"]] == [int(port)]
    labels = broker["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_consumers_may_reach_the_broker_and_the_hosts_web_server(docs, monkeypatch) -> None:
    app = app_docs(docs)
    data = config(app)
    policy = next(
        p for p in objects_of(docs, "NetworkPolicy") if p["metadata"]["name"] == "birdwatch-e2e"
    )
    rules = policy["spec"]["egress"]
    broker_rule = rules[0]
    assert broker_rule["to"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "kafka"}
    assert broker_rule["ports"][0]["port"] == int(kube.BOOTSTRAP.rsplit(":", 1)[1])
    web_port = rules[1]["ports"][0]["port"]
    assert web_port == overlay.OVERLAY_PORT == settings.DEFAULT_PORT
    for key in ("BIRDWATCH_MODEL_URL", "BIRDWATCH_LABELS_URL"):
        assert data[key].startswith("http://"), "served by the host, never baked in"
        assert f":{web_port}/" in data[key]
    assert settings_of(app, monkeypatch).allow_private_networks


def test_threads_follow_the_one_cpu_limit(docs, monkeypatch) -> None:
    app = app_docs(docs)
    resources = consumer(app)["resources"]
    assert milli(resources["limits"]["cpu"]) == 1000
    found = settings_of(app, monkeypatch)
    assert (found.inference_threads, found.decode_threads) == (1, 1)


def test_requests_fit_a_two_core_node_at_max_replicas_plus_a_rollout(docs) -> None:
    app = app_docs(docs)
    per_pod = milli(consumer(app)["resources"]["requests"]["cpu"])
    replicas = one(docs, "ScaledObject")["spec"]["maxReplicaCount"]
    broker = next(d for d in objects_of(docs, "Deployment") if d["metadata"]["name"] == "kafka")
    kafka = milli(
        broker["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    )
    agent = kube.agent_pod(overlay.NAMESPACE, settings.DEFAULT_IMAGE)["spec"]["containers"][0]
    surge = one(app, "Deployment")["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    total = (replicas + surge) * per_pod + kafka + milli(agent["resources"]["requests"]["cpu"])
    assert total <= NODE_CPU_MILLI, total


def test_topics_job_creates_enough_partitions(docs) -> None:
    job = one(docs, "Job")["spec"]["template"]["spec"]
    args = build_parser().parse_args(job["containers"][0]["args"])
    assert (args.command, args.topics_command) == ("topics", "create")
    assert args.partitions >= one(docs, "ScaledObject")["spec"]["maxReplicaCount"]
    env_from = job["containers"][0]["envFrom"][0]["configMapRef"]["name"]
    assert env_from == config_name(docs)


def config_name(docs: Docs) -> str:
    (found,) = [
        m["metadata"]["name"]
        for m in objects_of(docs, "ConfigMap")
        if m["metadata"]["name"].startswith("birdwatch-config")
    ]
    return found
