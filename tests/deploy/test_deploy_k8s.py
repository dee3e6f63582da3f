"""deploy/k8s: every kustomization renders with a real kustomize, every core object validates
against the Kubernetes schemas, and what operators rely on holds in every overlay."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

import kubernetes_validate
import pytest

from consumer.cli import build_parser
from consumer.config import ENV_PREFIX, Settings, load_settings
from consumer.http import HEALTH_PATH, METRICS_PATH, READY_PATH, make_app
from consumer.metrics import Metrics
from consumer.model.fetch import likely_tflite
from tests.deploy.tools import (
    ALL_KUSTOMIZATIONS,
    APP_OVERLAYS,
    Kustomize,
    objects_of,
    one,
    setting_env_names,
)

# The oldest Kubernetes minor we support and a current one (schemas from kubernetes-validate).
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
# Custom resources: no schema ships with kubernetes-validate; their fields are checked below.
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
Docs = list[dict[str, Any]]


def partitions() -> int:
    """The partitions `birdwatch topics create` gives the topics (the compose stack uses it)."""
    value: int = build_parser().parse_args(["topics", "create"]).partitions
    return value


def config(docs: Docs) -> dict[str, str]:
    maps = [
        m
        for m in objects_of(docs, "ConfigMap")
        if m["metadata"]["name"].startswith("birdwatch-config")
    ]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def pod_spec(docs: Docs) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def consumer(docs: Docs) -> dict[str, Any]:
    containers = pod_spec(docs)["containers"]
    assert [c["name"] for c in containers] == ["consumer"]
    found: dict[str, Any] = containers[0]
    return found


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def settings_of(docs: Docs, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a pod of this render starts with (secrets and downward API stubbed)."""
    for key, value in config(docs).items():
        monkeypatch.setenv(key, value)
    for var in consumer(docs).get("env", []):
        value = var.get("value", "stub-from-" + next(iter(var.get("valueFrom", {"x": 0}))))
        monkeypatch.setenv(var["name"], value)
    return load_settings()


app_overlays = pytest.mark.parametrize("overlay", APP_OVERLAYS)
# Which autoscaler each application overlay uses (test_overlay_uses_the_autoscaler_... checks).
KEDA_OVERLAYS = tuple(o for o in APP_OVERLAYS if o != "overlays/hpa")
HPA_OVERLAYS = ("overlays/hpa",)


# --- rendering and schemas --------------------------------------------------------------------


def test_kustomize_is_a_real_v5(kustomize: Kustomize) -> None:
    assert re.fullmatch(r"v5\.\d+\.\d+", kustomize.version), kustomize
    assert kustomize.command[-1] in ("build", "kustomize")


@pytest.mark.parametrize("overlay", ALL_KUSTOMIZATIONS)
def test_every_kustomization_renders(rendered, overlay) -> None:
    assert rendered[overlay], f"{overlay} rendered no objects"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", ALL_KUSTOMIZATIONS)
def test_core_objects_validate_against_kubernetes_schemas(rendered, overlay, version) -> None:
    for obj in rendered[overlay]:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        # strict: an unknown field (a typo) is an error, not silently dropped by the API server
        kubernetes_validate.validate(obj, version, strict=True)


def test_schema_validation_catches_a_typo(rendered) -> None:
    """The check above can fail: a misspelt probe field is refused."""
    deployment = one(rendered["base"], "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    broken = {**deployment, "spec": {**deployment["spec"]}}
    broken["spec"]["template"] = {
        **deployment["spec"]["template"],
        "spec": {"containers": [{**container, "readinesProbe": container["readinessProbe"]}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", ALL_KUSTOMIZATIONS)
def test_only_known_custom_resources(rendered, overlay) -> None:
    core = re.compile(r"^(v1|(apps|batch|policy|autoscaling|networking\.k8s\.io)/v\d+)$")
    for obj in rendered[overlay]:
        key = (obj["apiVersion"], obj["kind"])
        assert core.match(obj["apiVersion"]) or key in CUSTOM_KINDS, key


@app_overlays
def test_namespaced_objects_live_in_the_overlay_namespace(rendered, overlay) -> None:
    namespace = one(rendered[overlay], "Namespace")["metadata"]["name"]
    for obj in rendered[overlay]:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, obj["metadata"]


# --- settings ----------------------------------------------------------------------------------


@app_overlays
def test_configmap_holds_only_real_settings_with_valid_values(
    rendered, overlay, monkeypatch
) -> None:
    data = config(rendered[overlay])
    unknown = set(data) - setting_env_names()
    assert not unknown, f"not settings of the service (typos or orphans): {sorted(unknown)}"
    env_names = {v["name"] for v in consumer(rendered[overlay]).get("env", [])}
    assert env_names <= setting_env_names(), env_names - setting_env_names()
    settings = settings_of(rendered[overlay], monkeypatch)  # raises SettingsError if invalid
    assert settings.model_cache_dir == data["BIRDWATCH_MODEL_CACHE_DIR"]


@app_overlays
def test_secrets_are_referenced_never_written(rendered, overlay) -> None:
    docs = rendered[overlay]
    assert not objects_of(docs, "Secret"), "no Secret in git: reference one created out of band"
    assert not [k for k in config(docs) if "PASSWORD" in k]
    for var in consumer(docs).get("env", []):
        if "PASSWORD" in var["name"]:
            assert "secretKeyRef" in var["valueFrom"], var


@app_overlays
def test_instance_id_is_the_pod_name(rendered, overlay) -> None:
    env = {v["name"]: v for v in consumer(rendered[overlay])["env"]}
    ref = env[ENV_PREFIX + "INSTANCE_ID"]["valueFrom"]["fieldRef"]
    assert ref["fieldPath"] == "metadata.name"


@app_overlays
def test_threads_match_the_cpu_limit(rendered, overlay, monkeypatch) -> None:
    settings = settings_of(rendered[overlay], monkeypatch)
    limit = consumer(rendered[overlay])["resources"]["limits"]["cpu"]
    cores = float(limit[:-1]) / 1000 if str(limit).endswith("m") else float(limit)
    assert settings.inference_threads <= math.ceil(cores)
    assert settings.decode_threads <= math.ceil(cores)


# --- the pod -------------------------------------------------------------------------------------


@app_overlays
def test_probes_point_at_endpoints_the_service_serves(rendered, overlay, monkeypatch) -> None:
    docs = rendered[overlay]
    container = consumer(docs)
    served = {
        r.canonical for r in make_app(Metrics(), lambda: True, lambda: True).router.resources()
    }
    http_port = settings_of(docs, monkeypatch).http_port
    probes = {
        k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == HEALTH_PATH
    assert probes["readinessProbe"]["path"] == READY_PATH
    for probe in probes.values():
        assert probe["path"] in served
        assert port_number(container, probe["port"]) == http_port
    assert [p["containerPort"] for p in container["ports"]] == [http_port]


@app_overlays
def test_startup_probe_outlasts_the_model_load(rendered, overlay, monkeypatch) -> None:
    startup = consumer(rendered[overlay])["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget > settings_of(rendered[overlay], monkeypatch).model_load_timeout_s


@app_overlays
def test_grace_period_outlasts_the_shutdown_drain(rendered, overlay, monkeypatch) -> None:
    from consumer.kafka.service import LEAVE_TIMEOUT_S, OFFSETS_VISIBLE_TIMEOUT_S

    grace = pod_spec(rendered[overlay])["terminationGracePeriodSeconds"]
    drain = settings_of(rendered[overlay], monkeypatch).shutdown_timeout_s
    assert grace > drain + OFFSETS_VISIBLE_TIMEOUT_S + LEAVE_TIMEOUT_S


@app_overlays
def test_pod_is_non_root_read_only_and_tokenless(rendered, overlay) -> None:
    spec = pod_spec(rendered[overlay])
    assert spec["automountServiceAccountToken"] is False
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] > 0
    assert pod["runAsGroup"] > 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    sc = consumer(rendered[overlay])["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc.get("privileged", False) is False


@app_overlays
def test_model_cache_and_tmp_are_writable_scratch_volumes(rendered, overlay) -> None:
    docs = rendered[overlay]
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in consumer(docs)["volumeMounts"]}
    for path in (config(docs)["BIRDWATCH_MODEL_CACHE_DIR"], "/tmp"):
        assert "emptyDir" in volumes[mounts[path]], path


@app_overlays
def test_resources_are_requested_and_limited(rendered, overlay) -> None:
    resources = consumer(rendered[overlay])["resources"]
    for kind in ("cpu", "memory"):
        assert resources["requests"][kind]
        assert resources["limits"][kind]
    assert _bytes(resources["requests"]["memory"]) <= _bytes(resources["limits"]["memory"])


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


@app_overlays
def test_image_has_an_explicit_tag(rendered, overlay) -> None:
    image = consumer(rendered[overlay])["image"]
    name, _, tag = image.rpartition(":")
    assert name, image
    assert tag not in ("", "latest"), image
    assert "/" not in tag, image


@app_overlays
def test_image_backend_can_load_the_configured_model(rendered, overlay) -> None:
    """The `lite` image has no TensorFlow and the `tf` image no LiteRT (deploy/Dockerfile)."""
    tag = consumer(rendered[overlay])["image"].rpartition(":")[2]
    backend = tag.rsplit("-", 1)[-1]
    assert backend in ("lite", "tf"), tag
    assert likely_tflite(config(rendered[overlay])["BIRDWATCH_MODEL_URL"]) == (backend == "lite")


# --- scaling -------------------------------------------------------------------------------------


@app_overlays
def test_exactly_one_autoscaler_drives_the_deployment(rendered, overlay) -> None:
    docs = rendered[overlay]
    scalers = objects_of(docs, "ScaledObject") + objects_of(docs, "HorizontalPodAutoscaler")
    assert len(scalers) == 1, "KEDA and an HPA must not both scale the Deployment"
    target = scalers[0]["spec"]["scaleTargetRef"]
    deployment = one(docs, "Deployment")
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


@pytest.mark.parametrize("overlay", KEDA_OVERLAYS)
def test_keda_scales_on_the_lag_of_the_consumers_group(rendered, overlay) -> None:
    docs = rendered[overlay]
    scaled = one(docs, "ScaledObject")
    spec = scaled["spec"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    trigger = spec["triggers"][0]
    assert trigger["type"] == "kafka"
    meta, data = trigger["metadata"], config(docs)
    assert meta["bootstrapServers"] == data["BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS"]
    assert meta["consumerGroup"] == data["BIRDWATCH_GROUP_ID"]
    assert meta["topic"] == data["BIRDWATCH_INPUT_TOPIC"]
    assert int(meta["lagThreshold"]) > 0
    assert meta["offsetResetPolicy"] == "earliest"  # as the consumers (auto_offset_reset)
    assert meta.get("allowIdleConsumers", "false") == "false"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions()


@pytest.mark.parametrize("overlay", KEDA_OVERLAYS)
def test_keda_authenticates_like_the_consumers(rendered, overlay) -> None:
    docs = rendered[overlay]
    trigger, data = one(docs, "ScaledObject")["spec"]["triggers"][0], config(docs)
    protocol = data["BIRDWATCH_KAFKA_SECURITY_PROTOCOL"]
    meta = trigger["metadata"]
    assert (meta.get("tls") == "enable") == (protocol in ("SSL", "SASL_SSL"))
    if not protocol.startswith("SASL"):
        assert "sasl" not in meta
        assert "authenticationRef" not in trigger
        return
    assert meta["sasl"] == KEDA_SASL[data["BIRDWATCH_KAFKA_SASL_MECHANISM"]]
    auth = {a["metadata"]["name"]: a for a in objects_of(docs, "TriggerAuthentication")}
    refs = auth[trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]
    assert {r["parameter"] for r in refs} >= {"username", "password"}
    env = {v["name"]: v for v in consumer(docs)["env"]}
    password = env["BIRDWATCH_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    keda_password = next(r for r in refs if r["parameter"] == "password")
    assert (keda_password["name"], keda_password["key"]) == (password["name"], password["key"])


@pytest.mark.parametrize("overlay", HPA_OVERLAYS)
def test_hpa_alternative_stays_within_the_partitions(rendered, overlay) -> None:
    hpa = one(rendered[overlay], "HorizontalPodAutoscaler")
    spec = hpa["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert 1 <= spec["minReplicas"] <= spec["maxReplicas"] <= partitions()
    assert spec["metrics"][0]["resource"]["name"] == "cpu"


@app_overlays
def test_overlay_uses_the_autoscaler_it_is_listed_with(rendered, overlay) -> None:
    kind = "HorizontalPodAutoscaler" if overlay in HPA_OVERLAYS else "ScaledObject"
    assert objects_of(rendered[overlay], kind)


def test_topic_partitions_agree_everywhere(rendered) -> None:
    topics = {
        t["spec"]["topicName"]: t
        for t in objects_of(rendered["overlays/strimzi-topics"], "KafkaTopic")
    }
    data = config(rendered["base"])
    names = {data[f"BIRDWATCH_{k}_TOPIC"] for k in ("INPUT", "RESULTS", "DLQ")}
    assert set(topics) == names
    assert topics[data["BIRDWATCH_INPUT_TOPIC"]]["spec"]["partitions"] == partitions()
    for topic in topics.values():
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"]
        assert isinstance(topic["spec"]["partitions"], int)
        assert topic["spec"]["partitions"] > 0
        assert isinstance(topic["spec"]["replicas"], int)
        assert topic["spec"]["replicas"] > 0
        replicas = topic["spec"]["replicas"]
        assert int(topic["spec"]["config"]["min.insync.replicas"]) < replicas


@app_overlays
def test_disruption_budget_takes_one_consumer_at_a_time(rendered, overlay) -> None:
    docs = rendered[overlay]
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()


# --- network -------------------------------------------------------------------------------------


@app_overlays
def test_metrics_service_is_annotated_for_prometheus(rendered, overlay, monkeypatch) -> None:
    docs = rendered[overlay]
    service = one(docs, "Service")
    port = settings_of(docs, monkeypatch).http_port
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == METRICS_PATH
    assert int(annotations["prometheus.io/port"]) == port
    (svc_port,) = service["spec"]["ports"]
    assert port_number(consumer(docs), svc_port["targetPort"]) == port
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@app_overlays
def test_network_policy_allows_only_kafka_dns_https_and_metrics(
    rendered, overlay, monkeypatch
) -> None:
    docs = rendered[overlay]
    policy = one(docs, "NetworkPolicy")["spec"]
    container = consumer(docs)
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    settings = settings_of(docs, monkeypatch)

    ingress = [
        (port_number(container, p["port"]), p["protocol"])
        for r in policy["ingress"]
        for p in r["ports"]
    ]
    assert ingress == [(settings.http_port, "TCP")]

    egress = {(p["port"], p["protocol"]) for r in policy["egress"] for p in r["ports"]}
    kafka = {int(s.rsplit(":", 1)[1]) for s in settings.kafka_bootstrap_servers.split(",")}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP")} <= egress
    assert {(port, "TCP") for port in kafka} <= egress
    assert egress - {(53, "UDP"), (53, "TCP"), (443, "TCP")} <= {(9092, "TCP"), (9093, "TCP")}
    # HTTPS goes to public addresses only: never the cloud metadata service or the cluster.
    https = [
        r
        for r in policy["egress"]
        if (443, "TCP") in {(p["port"], p["protocol"]) for p in r["ports"]}
    ]
    for rule in https:
        for peer in rule["to"]:
            excluded = [ipaddress.ip_network(c) for c in peer["ipBlock"].get("except", [])]
            network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            if network.version == 4:
                for private in ("169.254.169.254", "10.0.0.1", "192.168.1.1", "127.0.0.1"):
                    address = ipaddress.ip_address(private)
                    assert any(address in net for net in excluded), private
