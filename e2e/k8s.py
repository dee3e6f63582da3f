"""`make e2e-k8s`: the kustomize deployment on a cluster, checked and measured.

Build and load the image, apply the e2e overlay (its own Kafka, the topics, the consumers) and
run, per delivery guarantee in a fresh namespace:
- smoke: real photos in, exactly one ok result each with the photo's species;
- scale-out: a burst of large photos drained by 1 and by 2 replicas (one CPU each);
- KEDA: a burst builds lag, the ScaledObject scales out and back to its minimum; replicas and
  lag over time go to a plot;
- chaos: a pod deleted, then a rollout restart, each during a stream: nothing lost; duplicates
  counted (at-least-once) or none visible to a read_committed reader (exactly-once).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e import agents, plots, records
from e2e.cpu import CpuMeter, drain_figures
from e2e.dataserver import Site, expected_species
from e2e.kube import Cluster, Deployed
from e2e.overlay import GUARANTEES
from e2e.overlay import write as write_overlay
from e2e.report import latency_of
from e2e.settings import REPO, Environment
from e2e.shell import E2EError, say, wait_for

TOPICS = ("bird-images", "bird-predictions")
GROUP = "birdwatch"
PARTITIONS = 6
PARTS = ("smoke", "scaleout", "keda", "chaos")
DOCS_IMG = REPO / "docs" / "img"


@dataclass(frozen=True)
class K8sOptions:
    parts: tuple[str, ...] = PARTS
    guarantees: tuple[str, ...] = GUARANTEES
    repeat: int = 10  # each labelled photo this many times in the smoke check
    burst: int = 300  # large photos per scale-out drain
    keda_events: int = 10000  # small photos in the KEDA burst
    chaos_rate: float = 50.0  # events/s of the chaos streams
    chaos_seconds: float = 40.0
    plot_dir: Path = DOCS_IMG
    keep: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def settle(cluster: Cluster, agent: agents.Agent, replicas: int) -> None:
    cluster.pause_at(replicas)
    cluster.wait_settled(replicas)
    wait_for(
        f"the group to settle with {replicas} member(s)",
        lambda: agents.group_settled(agent, GROUP, replicas, PARTITIONS),
        180,
    )


def smoke(agent: agents.Agent, site: Site, guarantee: str, repeat: int) -> dict[str, Any]:
    urls = site.photo_urls()
    prefix = f"smoke-{guarantee}-{int(time.time())}"
    count = agents.publish(agent, TOPICS[0], prefix, urls, len(urls) * repeat)
    data = agents.collect(agent, TOPICS, prefix, count, read_committed=guarantee == "exactly_once")
    result = records.outcome(data)
    wrong = records.wrong_species(data, expected_species())
    if result.lost or result.duplicates or wrong:
        raise E2EError(
            f"smoke ({guarantee}): {len(result.lost)} lost, {result.duplicates} duplicates, "
            f"{len(wrong)} wrong of {count}"
        )
    stats = records.LatencyStats.of(result.latencies_ms())
    say(f"smoke ({guarantee}): {count} events, {count} ok results with the right species")
    return {"events": count, "latency": stats.as_dict() if stats else None}


def scaleout(cluster: Cluster, agent: agents.Agent, site: Site, burst: int) -> dict[str, Any]:
    drained: dict[str, dict[str, Any]] = {}
    for replicas in (1, 2):
        settle(cluster, agent, replicas)
        prefix = f"scale{replicas}-{int(time.time())}"
        pods = [p["metadata"]["name"] for p in cluster.consumer_pods()]
        meter = CpuMeter(pods, cluster.cpu_seconds)
        meter.start()
        count = agents.publish(agent, TOPICS[0], prefix, site.photo_urls(large=True), burst)
        result = records.outcome(agents.collect(agent, TOPICS, prefix, count, read_committed=False))
        share = meter.stop()
        if result.lost:
            raise E2EError(
                f"scale-out with {replicas}: {len(result.lost)} of {count} results missing"
            )
        measured = records.drain(result)
        drained[str(replicas)] = drain_figures(measured, share)
        say(
            f"scale-out: {replicas} replica(s) drained {count} large photos in "
            f"{measured.seconds:.1f} s; they used {share.consumer_cores:.2f} cores, "
            f"the machine {share.machine_cores:.2f}"
        )
    return {**drained, "ratio": drained["2"]["per_second"] / drained["1"]["per_second"]}


class ReplicaSampler:
    """(time, wanted, ready) of the Deployment every `every` seconds, in a thread."""

    def __init__(self, cluster: Cluster, every: float = 2.0) -> None:
        self.samples: list[tuple[int, int, int]] = []
        self._cluster = cluster
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                desired, ready = self._cluster.replicas()
                self.samples.append((int(time.time() * 1000), desired, ready))
            except E2EError:
                pass
            self._stop.wait(self._every)

    def __enter__(self) -> ReplicaSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def keda(
    cluster: Cluster, agent: agents.Agent, site: Site, env: Environment, options: K8sOptions
) -> dict[str, Any]:
    settle(cluster, agent, 1)
    cluster.resume_autoscaling()
    lag_args = [
        "lag",
        "--bootstrap",
        agent.bootstrap,
        "--group",
        GROUP,
        "--topic",
        TOPICS[0],
        "--every",
        "2",
    ]
    prefix = f"keda-{int(time.time())}"
    with (
        agents.start(agent, lag_args, env.out_dir / "keda-lag.log") as lag,
        ReplicaSampler(cluster) as sampler,
    ):
        time.sleep(4)
        origin = int(time.time() * 1000)
        count = agents.publish(agent, TOPICS[0], prefix, site.photo_urls(), options.keda_events)

        def back_to_one() -> bool:
            lags = [r["lag"] for r in records.parse_lines(lag.lines) if r.get("kind") == "lag"]
            scaled = any(s[1] >= 2 for s in sampler.samples)
            last = sampler.samples[-1] if sampler.samples else (0, 0, 0)
            return scaled and bool(lags) and lags[-1] == 0 and last[1] == 1 and last[2] == 1

        wait_for("KEDA to scale out and back to 1 replica", back_to_one, 900, every=5)
        time.sleep(4)
    result = records.outcome(agents.collect(agent, TOPICS, prefix, count, read_committed=False))
    if result.lost:
        raise E2EError(f"KEDA burst: {len(result.lost)} of {count} results missing")
    lag_points = [
        ((r["t_ms"] - origin) / 1000, int(r["lag"]))
        for r in records.parse_lines(lag.lines)
        if r.get("kind") == "lag"
    ]
    wanted = [((t - origin) / 1000, d) for t, d, _ in sampler.samples]
    ready = [((t - origin) / 1000, r) for t, _, r in sampler.samples]
    timeline = keda_timeline(lag_points, wanted)
    plot = plots.plot_keda(
        lag_points,
        wanted,
        ready,
        f"KEDA on one 2-core node: {count} small photos, lagThreshold 1000, "
        f"max {timeline['max_replicas']} replicas",
        options.plot_dir / "keda.png",
    )
    say(f"KEDA: 1 -> {timeline['max_replicas']} -> 1 replicas; plot {plot}")
    return {"events": count, "duplicates": result.duplicates, **timeline, "plot": str(plot)}


def keda_timeline(lag: list[tuple[float, int]], wanted: list[tuple[float, int]]) -> dict[str, Any]:
    """When the lag peaked and reached 0, when replicas first rose, peaked and came back."""
    top = max(v for _, v in wanted)
    first_up = next(t for t, v in wanted if v >= 2)
    peak_lag = max(lag, key=lambda p: p[1])
    drained = next((t for t, v in lag if t > peak_lag[0] and v == 0), None)
    back = next((t for t, v in wanted if t > first_up and v == 1), None)
    return {
        "max_replicas": top,
        "scaled_up_at_s": first_up,
        "peak_lag": peak_lag[1],
        "drained_at_s": drained,
        "back_to_min_at_s": back,
    }


def chaos(
    cluster: Cluster,
    agent: agents.Agent,
    site: Site,
    env: Environment,
    guarantee: str,
    action: str,
    options: K8sOptions,
) -> dict[str, Any]:
    """A stream through one disruption: `delete` (a pod) or `rollout` (restart)."""
    settle(cluster, agent, 2)
    prefix = f"chaos-{action}-{guarantee}-{int(time.time())}"
    log = env.out_dir / f"{prefix}.log"
    started = time.monotonic()
    with agents.publishing(
        agent, TOPICS[0], prefix, site.photo_urls(), options.chaos_rate, log
    ) as stream:
        time.sleep(options.chaos_seconds / 4)
        if action == "delete":
            victim = cluster.consumer_pods()[0]["metadata"]["name"]
            cluster.delete_pod(victim)
        else:
            cluster.rollout_restart()
        time.sleep(max(0.0, options.chaos_seconds - (time.monotonic() - started)))
        stream.stop()
    count = agents.published_count(stream)
    eos = guarantee == "exactly_once"
    result = records.outcome(
        agents.collect(agent, TOPICS, prefix, count, read_committed=eos, idle_s=120)
    )
    stats = records.LatencyStats.of(result.latencies_ms())
    say(
        f"chaos {action} ({guarantee}): {count} events, {len(result.lost)} lost, "
        f"{result.duplicates} duplicates, {latency_of(stats)}"
    )
    if result.lost:
        raise E2EError(f"chaos {action} ({guarantee}): {len(result.lost)} of {count} results lost")
    if eos and result.duplicates:
        raise E2EError(
            f"chaos {action} (exactly_once): {result.duplicates} duplicates visible "
            "to a read_committed reader"
        )
    return {
        "events": count,
        "lost": 0,
        "duplicates": result.duplicates,
        "latency": stats.as_dict() if stats else None,
    }


def run_k8s(env: Environment, site: Site, options: K8sOptions) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for guarantee in options.guarantees:
        folder = write_overlay(
            env.out_dir / f"k8s-{guarantee}", env.image, site, guarantee, env.port
        )
        found: dict[str, Any] = {}
        with Deployed(env, folder, options.keep) as cluster:
            agent = cluster.start_agent(env.image)
            if "smoke" in options.parts:
                found["smoke"] = smoke(agent, site, guarantee, options.repeat)
            if guarantee == "at_least_once" and "scaleout" in options.parts:
                found["scaleout"] = scaleout(cluster, agent, site, options.burst)
            if guarantee == "at_least_once" and "keda" in options.parts:
                found["keda"] = keda(cluster, agent, site, env, options)
            if "chaos" in options.parts:
                for action in ("delete", "rollout"):
                    found[f"chaos_{action}"] = chaos(
                        cluster, agent, site, env, guarantee, action, options
                    )
        report[guarantee] = found
    return report
