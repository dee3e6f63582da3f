"""`make e2e-handover` (issue 16): how long events wait while pods come and go.

A steady stream (20 events/s by default) from a pod in the cluster, with two replicas, through
each disruption in turn: `kubectl rollout restart`, a scale-down 2 -> 1, a scale-up 1 -> 2,
`kubectl delete pod`, and a crash (SIGKILL of the service process inside a pod, the container
restarts in the same pod). Each disruption waits for the Deployment to be whole again, then
`gap` seconds. Per event: latency from the input record's to the first result record's Kafka
timestamp; lost and duplicated results; per-window p50/p99/max; a plot with the disruptions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e import agents, plots, records
from e2e.dataserver import Site
from e2e.k8s import DOCS_IMG, TOPICS, settle
from e2e.kube import Cluster, Deployed
from e2e.overlay import write as write_overlay
from e2e.report import latency_of
from e2e.settings import Environment
from e2e.shell import say, wait_for

DISRUPTIONS = ("rollout", "scale-down", "scale-up", "delete", "crash")
# A crash waits for the container to come back (its partitions stay with the static member), so
# the latency promise covers the stream up to the first crash: rollouts, scaling and deletions.
PROMISE_ENDS_AT = "crash"


@dataclass(frozen=True)
class HandoverOptions:
    rate: float = 20.0
    disruptions: tuple[str, ...] = DISRUPTIONS
    guarantees: tuple[str, ...] = ("at_least_once", "exactly_once")
    steady_s: float = 20.0
    gap_s: float = 45.0
    replicas: int = 2
    plot_dir: Path = DOCS_IMG
    keep: bool = False


def plan_replicas(disruptions: tuple[str, ...], start: int) -> list[int]:
    """The replica count after each disruption; refuses a plan that scales below one."""
    counts, current = [], start
    for name in disruptions:
        if name not in DISRUPTIONS:
            raise ValueError(f"unknown disruption {name!r}: choose from {', '.join(DISRUPTIONS)}")
        current += {"scale-down": -1, "scale-up": 1}.get(name, 0)
        if current < 1:
            raise ValueError(f"{name} would leave no replica")
        counts.append(current)
    return counts


def disrupt(cluster: Cluster, name: str, replicas: int) -> None:
    """Do one disruption and wait until `replicas` pods are ready again."""
    actions: dict[str, Callable[[], None]] = {
        "rollout": cluster.rollout_restart,
        "scale-down": lambda: cluster.pause_at(replicas),
        "scale-up": lambda: cluster.pause_at(replicas),
        "delete": lambda: cluster.delete_pod(cluster.consumer_pods()[0]["metadata"]["name"]),
    }
    if name == "crash":
        pod = cluster.consumer_pods()[0]["metadata"]["name"]
        before = cluster.crash(pod)
        wait_for(f"{pod} to restart", lambda: cluster.restarted(pod, before), 300)
    else:
        actions[name]()
    cluster.wait_settled(replicas)


@dataclass(frozen=True)
class Disruption:
    mark: records.Mark
    whole_after_s: float  # until the Deployment had its replicas ready again


def stream_through(
    cluster: Cluster,
    agent: agents.Agent,
    site: Site,
    env: Environment,
    prefix: str,
    options: HandoverOptions,
) -> tuple[int, int, list[Disruption]]:
    """Publish steadily through every disruption: (events published, stream start in ms,
    the disruptions)."""
    counts = plan_replicas(options.disruptions, options.replicas)
    done: list[Disruption] = []
    log = env.out_dir / f"{prefix}.log"
    with agents.publishing(
        agent, TOPICS[0], prefix, site.photo_urls(), options.rate, log
    ) as stream:
        origin = int(time.time() * 1000)
        time.sleep(options.steady_s)
        for name, replicas in zip(options.disruptions, counts, strict=True):
            say(f"handover: {name} (then {replicas} replica(s))")
            mark = records.Mark(name, int(time.time() * 1000))
            disrupt(cluster, name, replicas)
            done.append(Disruption(mark, time.time() - mark.at_ms / 1000))
            time.sleep(options.gap_s)
        stream.stop()
    return agents.published_count(stream), origin, done


def measure(
    cluster: Cluster,
    agent: agents.Agent,
    site: Site,
    env: Environment,
    guarantee: str,
    options: HandoverOptions,
) -> dict[str, Any]:
    settle(cluster, agent, options.replicas)
    prefix = f"handover-{guarantee}-{int(time.time())}"
    count, origin, done = stream_through(cluster, agent, site, env, prefix, options)
    eos = guarantee == "exactly_once"
    data = agents.collect(
        agent, TOPICS, prefix, count, eos, idle_s=120, save=env.out_dir / f"{prefix}.jsonl"
    )
    result = records.outcome(data)
    overall = records.LatencyStats.of(result.latencies_ms())
    marks = [d.mark for d in done]
    crash = next((m.at_ms for m in marks if m.name == PROMISE_ENDS_AT), math.inf)
    promised = records.published_before(result, crash)
    (_, steady), *windows = records.windows(result, marks)
    label = guarantee.replace("_", "-")
    start = [(d.mark.at_ms - origin) / 1000 for d in done]
    plot = plots.plot_handover(
        records.series(result, origin),
        [(d.mark, at, at + d.whole_after_s) for d, at in zip(done, start, strict=True)],
        f"Handover, {label}, {options.rate:g} events/s, {options.replicas} replicas, "
        f"one 2-core node: {latency_of(overall)}",
        options.plot_dir / f"handover-{label}.png",
    )
    return {
        "guarantee": guarantee,
        "rate": options.rate,
        "events": count,
        "lost": len(result.lost),
        "duplicates": result.duplicates,
        "overall": overall.as_dict() if overall else None,
        "before_crash": promised.as_dict() if promised else None,
        "steady": steady.as_dict() if steady else None,
        "disruptions": [
            {
                "name": d.mark.name,
                "at_s": at,
                "whole_after_s": d.whole_after_s,
                "latency": stats.as_dict() if stats else None,
            }
            for d, at, (_, stats) in zip(done, start, windows, strict=True)
        ],
        "plot": str(plot),
    }


def run_handover(env: Environment, site: Site, options: HandoverOptions) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for guarantee in options.guarantees:
        folder = write_overlay(
            env.out_dir / f"handover-{guarantee}", env.image, site, guarantee, env.port
        )
        with Deployed(env, folder, options.keep) as cluster:
            agent = cluster.start_agent(env.image)
            report[guarantee] = measure(cluster, agent, site, env, guarantee, options)
    return report


def problems(
    report: dict[str, Any], max_wait_s: float = math.inf, p99_s: float = math.inf
) -> list[str]:
    """What breaks the promises: lost results in any mode, visible duplicates in exactly-once,
    and in at-least-once an event up to the first crash that waited longer than `max_wait_s`
    or a p99 over those events above `p99_s`."""
    found = []
    for guarantee, run in report.items():
        if run["lost"]:
            found.append(f"{guarantee}: {run['lost']} of {run['events']} results lost")
        if guarantee == "exactly_once" and run["duplicates"]:
            found.append(f"exactly_once: {run['duplicates']} duplicates visible to read_committed")
        promised = run.get("before_crash")
        if guarantee != "at_least_once" or not promised:
            continue
        if promised["max_ms"] > max_wait_s * 1000:
            found.append(
                f"at_least_once: an event waited {promised['max_ms'] / 1000:.1f} s "
                f"(more than {max_wait_s:g} s)"
            )
        if promised["p99_ms"] > p99_s * 1000:
            found.append(
                f"at_least_once: p99 {promised['p99_ms'] / 1000:.2f} s (more than {p99_s:g} s)"
            )
    return found
