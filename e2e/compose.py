"""`make e2e-compose`: the compose stack as an operator runs it, checked and measured.

Build the image, start Kafka, the topics and N consumers (the model, labels and photos from the
host's web server), publish real photos and check that every event gets exactly one ok result
naming the species of its photo and that the partitions are spread over the consumers; then
drain a burst of large photos with 1 and with 2 consumers limited to one CPU each and report
the ratio. `docker compose down -v` at the end, also after a failure.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from e2e import agents, records
from e2e.cpu import CGROUP_CPU_SECONDS, CpuMeter, drain_figures
from e2e.dataserver import Site, expected_species
from e2e.settings import REPO, Environment
from e2e.shell import E2EError, run, say, wait_for

PROJECT = "birdwatch-e2e"
BOOTSTRAP = "127.0.0.1:9094"  # the compose file's host listener
TOPICS = ("bird-images", "bird-predictions")
GROUP = "birdwatch"
PARTITIONS = 6


@dataclass(frozen=True)
class ComposeOptions:
    consumers: int = 3
    repeat: int = 15  # each labelled photo this many times in the correctness check
    burst: int = 300  # large photos per drain
    keep: bool = False


def override(site: Site) -> dict[str, Any]:
    """What the e2e run changes in docker-compose.yml: the model from the host's server, one
    CPU per consumer (one decode and one inference thread, as the benchmarks' 1-CPU pod)."""
    return {
        "services": {
            "consumer": {
                "environment": {
                    "BIRDWATCH_MODEL_URL": site.model_url,
                    "BIRDWATCH_LABELS_URL": site.labels_url,
                    "BIRDWATCH_ALLOW_PRIVATE_NETWORKS": "true",
                    "BIRDWATCH_INFERENCE_THREADS": "1",
                    "BIRDWATCH_DECODE_THREADS": "1",
                    "BIRDWATCH_LOG_FORMAT": "json",
                },
                "cpus": 1.0,
                # host.docker.internal on Linux engines too (Docker Desktop defines it).
                "extra_hosts": ["host.docker.internal:host-gateway"],
            }
        }
    }


class Stack:
    """The compose project of the run; `down -v` on exit unless kept."""

    def __init__(self, env: Environment, site: Site, keep: bool) -> None:
        self.keep = keep
        self.out_dir = env.out_dir
        path = env.out_dir / "compose.e2e.json"
        path.write_text(json.dumps(override(site), indent=2))
        self.base = ["docker", "compose", "-p", PROJECT, "--project-directory", str(REPO)]
        self.base += ["-f", str(REPO / "docker-compose.yml"), "-f", str(path)]

    def __call__(self, *args: str, timeout: float = 900) -> str:
        return run([*self.base, *args], timeout=timeout).stdout

    def containers(self, service: str) -> list[dict[str, Any]]:
        text = self("ps", "--all", "--format", "json", service, timeout=60).strip()
        if text.startswith("["):
            found: list[dict[str, Any]] = json.loads(text)
            return found
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def healthy(self, service: str, count: int) -> bool:
        found = [c for c in self.containers(service) if c.get("State") == "running"]
        return len(found) == count and all(c.get("Health") == "healthy" for c in found)

    def scale(self, consumers: int) -> None:
        self(
            "up",
            "-d",
            "--no-recreate",
            "--scale",
            f"consumer={consumers}",
            "kafka",
            "topics",
            "consumer",
            "results",
        )
        wait_for(f"{consumers} healthy consumers", lambda: self.healthy("consumer", consumers), 420)

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            logs = run([*self.base, "logs", "--no-color", "--tail", "200"], check=False, timeout=60)
            path = self.out_dir / "failed-compose.log"
            path.write_text(logs.stdout + logs.stderr)
            say(f"the stack's logs: {path}")
        if self.keep:
            say(f"kept: docker compose -p {PROJECT} down -v to remove")
            return
        run(
            [*self.base, "down", "-v", "--remove-orphans", "--timeout", "20"],
            check=False,
            timeout=300,
        )


def check_results_service(stack: Stack) -> None:
    """The results follower serves no HTTP: running, with no health check to fail."""
    (follower,) = stack.containers("results")
    if follower.get("State") != "running" or follower.get("Health"):
        raise E2EError(f"results service is {follower.get('State')}/{follower.get('Health')}")


def correctness(agent: agents.Agent, site: Site, consumers: int, repeat: int) -> dict[str, Any]:
    """Every event: exactly one ok result with its photo's species; every consumer holds
    partitions and the events cover all of them."""
    state = agents.group(agent, GROUP)
    owned = {m["client"]: m["partitions"] for m in state["members"]}
    if len(owned) != consumers or sorted(p for ps in owned.values() for p in ps) != list(
        range(PARTITIONS)
    ):
        raise E2EError(f"partitions not spread over {consumers} consumers: {owned}")
    urls = site.photo_urls()
    count = agents.publish(agent, TOPICS[0], "compose-ok", urls, len(urls) * repeat)
    data = agents.collect(agent, TOPICS, "compose-ok", count, read_committed=False)
    result = records.outcome(data)
    wrong = records.wrong_species(data, expected_species())
    used = sorted(set(data.inputs.partition.values()))
    if used != list(range(PARTITIONS)):
        raise E2EError(f"the events used partitions {used} only, not all {PARTITIONS}")
    if result.lost or result.duplicates or wrong or result.delivered != count:
        raise E2EError(
            f"correctness: {len(result.lost)} lost, {result.duplicates} duplicates, "
            f"{len(wrong)} wrong species of {count} events"
        )
    say(f"correctness: {count} events, all ok with the right species; partitions {owned}")
    return {"events": count, "lost": 0, "duplicates": 0, "wrong": 0, "partitions": owned}


def container_cpu_seconds(container: str) -> float:
    return float(
        run(["docker", "exec", container, "python", "-c", CGROUP_CPU_SECONDS], quiet=True).stdout
    )


def drain(
    stack: Stack, agent: agents.Agent, site: Site, consumers: int, burst: int
) -> dict[str, Any]:
    wait_for(
        f"the group to settle with {consumers} member(s)",
        lambda: agents.group_settled(agent, GROUP, consumers, PARTITIONS),
        180,
    )
    prefix = f"compose-drain{consumers}-{int(time.time())}"
    meter = CpuMeter(stack("ps", "-q", "consumer", timeout=60).split(), container_cpu_seconds)
    meter.start()
    count = agents.publish(agent, TOPICS[0], prefix, site.photo_urls(large=True), burst)
    result = records.outcome(agents.collect(agent, TOPICS, prefix, count, read_committed=False))
    share = meter.stop()
    if result.lost:
        raise E2EError(f"drain with {consumers}: {len(result.lost)} of {count} results missing")
    measured = records.drain(result)
    say(
        f"drain with {consumers} consumer(s): {count} large photos in {measured.seconds:.1f} s "
        f"= {measured.per_second:.1f}/s; consumers used {share.consumer_cores:.2f} cores, "
        f"the machine {share.machine_cores:.2f}"
    )
    return drain_figures(measured, share)


def run_compose(env: Environment, site: Site, options: ComposeOptions) -> dict[str, Any]:
    agent = agents.LocalAgent(BOOTSTRAP)
    with Stack(env, site, options.keep) as stack:
        started = time.monotonic()
        stack("build", "consumer", timeout=1800)
        say(f"image built in {time.monotonic() - started:.0f} s")
        stack.scale(options.consumers)
        check_results_service(stack)
        wait_for(
            "the group to settle",
            lambda: agents.group_settled(agent, GROUP, options.consumers, PARTITIONS),
            180,
        )
        checked = correctness(agent, site, options.consumers, options.repeat)
        stack.scale(1)
        one = drain(stack, agent, site, 1, options.burst)
        stack.scale(2)
        two = drain(stack, agent, site, 2, options.burst)
    return {
        "correctness": checked,
        "drain": {"1": one, "2": two, "ratio": two["per_second"] / one["per_second"]},
    }


def save(env: Environment, name: str, result: dict[str, Any]) -> Path:
    path = env.out_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path
