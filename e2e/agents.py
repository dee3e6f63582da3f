"""Where agent.py runs: on the host (the compose broker's host listener) or in a pod of the
cluster (`kubectl exec`), with the same arguments and the same JSON lines out."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from e2e import records
from e2e.shell import Background, E2EError, run

AGENT_FILE = Path(__file__).with_name("agent.py")


class Agent(Protocol):
    @property
    def bootstrap(self) -> str: ...

    def command(self, args: list[str], interactive: bool = False) -> list[str]: ...


@dataclass(frozen=True)
class LocalAgent:
    """agent.py by this interpreter, against a broker the host reaches."""

    bootstrap: str

    def command(self, args: list[str], interactive: bool = False) -> list[str]:
        return [sys.executable, str(AGENT_FILE), *args]


@dataclass(frozen=True)
class PodAgent:
    """agent.py in a running pod (mounted from a ConfigMap), against the in-cluster broker."""

    bootstrap: str
    namespace: str
    pod: str
    path: str = "/agent/agent.py"

    def command(self, args: list[str], interactive: bool = False) -> list[str]:
        stdin = ["-i"] if interactive else []
        return [
            "kubectl",
            "-n",
            self.namespace,
            "exec",
            *stdin,
            self.pod,
            "--",
            "python",
            self.path,
            *args,
        ]


def call(
    agent: Agent, args: list[str], timeout: float = 900, save: Path | None = None
) -> list[dict[str, Any]]:
    """Run an agent command; its JSON lines (also written to `save`, to re-plot a run)."""
    proc = run(agent.command(args), timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise E2EError(f"agent {args[0]} failed ({proc.returncode}): {tail}")
    if save is not None:
        save.write_text(proc.stdout)
    return records.parse_lines(proc.stdout.splitlines())


def start(agent: Agent, args: list[str], log: Path | None = None) -> Background:
    """A long-running agent command that stops when its stdin closes (Background.stop)."""
    return Background(agent.command(args, interactive=True), log)


def publish(
    agent: Agent, topic: str, prefix: str, urls: list[str], count: int, rate: float = 0
) -> int:
    args = ["publish", "--bootstrap", agent.bootstrap, "--topic", topic, "--prefix", prefix]
    args += [f"--url={u}" for u in urls] + ["--count", str(count), "--rate", str(rate)]
    (summary,) = [r for r in call(agent, args) if r.get("kind") == "published"]
    return int(summary["count"])


def publishing(
    agent: Agent, topic: str, prefix: str, urls: list[str], rate: float, log: Path
) -> Background:
    """A steady stream at `rate` events/s until stopped."""
    args = ["publish", "--bootstrap", agent.bootstrap, "--topic", topic, "--prefix", prefix]
    args += [f"--url={u}" for u in urls] + ["--rate", str(rate), "--until-eof"]
    return start(agent, args, log)


def published_count(stream: Background) -> int:
    found = [r for r in records.parse_lines(stream.lines) if r.get("kind") == "published"]
    if not found:
        raise E2EError("the publisher stopped without its summary (see its log)")
    return int(found[-1]["count"])


def collect(
    agent: Agent,
    topics: tuple[str, str],
    prefix: str,
    expect: int,
    read_committed: bool,
    idle_s: float = 90,
    save: Path | None = None,
) -> records.Collected:
    args = ["collect", "--bootstrap", agent.bootstrap, "--input", topics[0], "--results", topics[1]]
    args += ["--prefix", prefix, "--expect", str(expect), "--idle", str(idle_s)]
    args += ["--isolation", "read_committed" if read_committed else "read_uncommitted"]
    return records.collected(call(agent, args, save=save))


def group(agent: Agent, group_id: str) -> dict[str, Any]:
    found = call(agent, ["group", "--bootstrap", agent.bootstrap, "--group", group_id], timeout=60)
    return found[-1] if found else {"state": "Unknown", "members": []}


def group_settled(agent: Agent, group_id: str, members: int, partitions: int) -> bool:
    """The group is Stable with `members` members that hold all the partitions between them."""
    state = group(agent, group_id)
    held = sorted(p for m in state["members"] for p in m["partitions"])
    return (
        state["state"] == "Stable"
        and len(state["members"]) == members
        and held == list(range(partitions))
        and all(m["partitions"] for m in state["members"])
    )
