"""`python -m bench.membership`: what each change of group membership costs, on the broker.

Bare aiokafka members (no model, no pipeline: the protocol's own cost) of one group on a
6-partition topic, a producer writing 100 records/s to it, each member committing what it read.
Cases, each timed from the change:

- `leave-static`: a static member stops (aiokafka sends no LeaveGroup): the session timeout.
- `leave-static+leave`: the same, plus `consumer.kafka.membership.leave_group` (LeaveGroup v3+).
- `leave-dynamic`: a dynamic member stops (aiokafka's LeaveGroup v1).
- `join`: a second member joins a group of one.
- `crash-static` / `crash-dynamic`: a member in a child process is SIGKILLed and started again
  `--restart-after` seconds later (a container crash and its restart inside the pod).

For each: when the survivor owns every partition (`owns_all_s`), when it first reads a moved
partition (`first_moved_s`), its pause between revoke and assignment, and the longest any record
waited between its publication and its consumption (`worst_wait_s`). Writes
bench/out/membership.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from bench.paths import OUT_DIR
from consumer.kafka.membership import AiokafkaGroupSession, leave_group
from consumer.testing.broker import kafka_broker
from consumer.testing.topics import create_topics
from consumer.testing.waiting import wait_until

PARTITIONS = 6
CASES = (
    "leave-static",
    "leave-static+leave",
    "leave-dynamic",
    "join",
    "crash-static",
    "crash-dynamic",
)


@dataclass
class Member:
    """One aiokafka member: what it read (monotonic time, partition, publication time) and its
    rebalance events (monotonic time, event, partition count)."""

    consumer: AIOKafkaConsumer
    reads: list[tuple[float, int, float]] = field(default_factory=list)
    events: list[tuple[float, str, int]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def owned(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: Member) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._member.events.append((time.monotonic(), "revoked", len(revoked)))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._member.events.append((time.monotonic(), "assigned", len(assigned)))


@dataclass(frozen=True)
class Group:
    bootstrap: str
    topic: str
    group_id: str
    heartbeat_ms: int
    session_ms: int

    def consumer(self, instance_id: str | None) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            group_instance_id=instance_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.session_ms,
            heartbeat_interval_ms=self.heartbeat_ms,
            rebalance_timeout_ms=self.session_ms + 10_000,
            request_timeout_ms=self.session_ms + 15_000,
        )


async def start_member(group: Group, instance_id: str | None, log: Path | None = None) -> Member:
    member = Member(group.consumer(instance_id))
    member.consumer.subscribe([group.topic], listener=_Listener(member))
    await member.consumer.start()
    member.task = asyncio.create_task(_consume(member, log))
    return member


async def stop_member(member: Member) -> None:
    if member.task is not None:
        member.task.cancel()
    await member.consumer.stop()


async def _consume(member: Member, log: Path | None = None) -> None:
    consumer = member.consumer
    while True:
        batch = await consumer.getmany(timeout_ms=100)
        now, wall = time.monotonic(), time.time()
        for tp, records in batch.items():
            member.reads.extend((now, tp.partition, wall - r.timestamp / 1000) for r in records)
            if log is not None and records:  # a child member: (wall time, longest wait)
                wait = max(wall - r.timestamp / 1000 for r in records)
                with log.open("a") as out:
                    out.write(json.dumps([wall, wait]) + "\n")
        if batch:
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            try:
                await consumer.commit(offsets)
            except Exception:  # noqa: S112 - lost to a rebalance: the next owner reads them again
                continue


async def _publish(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        for n in range(10**9):
            await producer.send(topic, b"x", partition=n % PARTITIONS)
            await asyncio.sleep(0.01)
    finally:
        await producer.stop()


@dataclass
class Outcome:
    case: str
    heartbeat_ms: int
    owns_all_s: float | None
    first_moved_s: float | None
    survivor_pause_s: float | None
    worst_wait_s: float | None
    restarted_reads_s: float | None = None  # crash: the restarted member's first read


@dataclass
class Run:
    """What one case started, so that all of it is stopped at the end."""

    members: list[Member] = field(default_factory=list)
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    child_log: Path = Path()


async def run_case(case: str, group: Group, restart_after_s: float, work: Path) -> Outcome:
    await create_topics(group.bootstrap, [group.topic], PARTITIONS)
    publisher = asyncio.create_task(_publish(group.bootstrap, group.topic))
    static = "dynamic" not in case
    other_id = "other" if static else None
    run = Run(child_log=work / f"{group.group_id}.jsonl")
    try:
        survivor = await start_member(group, "survivor" if static else None)
        run.members.append(survivor)
        if case.startswith("crash"):
            run.children.append(_spawn(group, other_id, run.child_log))
        elif case != "join":
            run.members.append(await start_member(group, other_id))
        want = PARTITIONS if case == "join" else PARTITIONS // 2
        await wait_until(lambda: len(survivor.owned()) == want, 60, "a stable group")
        await asyncio.sleep(2)
        moved = set(range(PARTITIONS)) - survivor.owned()
        t0, wall0 = time.monotonic(), time.time()
        if case == "join":
            run.members.append(await start_member(group, "joiner"))
            await wait_until(lambda: len(survivor.owned()) == 3, 60, "the new split")
        elif case.startswith("crash"):
            run.children[0].send_signal(signal.SIGKILL)
            run.children[0].wait()
            await asyncio.sleep(restart_after_s)
            run.children.append(_spawn(group, other_id, run.child_log))
            # Long enough for a second rebalance after the dead member's session timeout.
            await asyncio.sleep(group.session_ms / 1000 + 8 - restart_after_s)
        else:
            other = run.members[1]
            assert other.task is not None
            other.task.cancel()
            if case == "leave-static+leave":
                await leave_group(AiokafkaGroupSession(other.consumer), "bench", timeout_s=5)
            await other.consumer.stop()
            limit = group.session_ms / 1000 + 15
            await wait_until(lambda: len(survivor.owned()) == PARTITIONS, limit, "the handover")
        await asyncio.sleep(1.5)
        return _outcome(case, group, survivor, t0, wall0, moved, run.child_log)
    finally:
        publisher.cancel()
        for member in run.members:
            await stop_member(member)
        for child in run.children:
            child.kill()
            child.wait()


def _outcome(
    case: str,
    group: Group,
    survivor: Member,
    t0: float,
    wall0: float,
    moved: set[int],
    child_log: Path,
) -> Outcome:
    assigned = [t - t0 for t, kind, _ in survivor.events if kind == "assigned" and t >= t0]
    revoked = [t - t0 for t, kind, _ in survivor.events if kind == "revoked" and t >= t0]
    first_moved = [t - t0 for t, p, _ in survivor.reads if p in moved and t >= t0]
    waits = [wait for t, _, wait in survivor.reads if t >= t0 - 1]
    restarted: float | None = None
    if child_log.is_file():
        rows = [json.loads(line) for line in child_log.read_text().splitlines()]
        later = [(at, wait) for at, wait in rows if at > wall0]
        if later:
            restarted = round(later[0][0] - wall0, 3)
            waits.extend(wait for _, wait in later)
    return Outcome(
        case=case,
        heartbeat_ms=group.heartbeat_ms,
        owns_all_s=round(assigned[-1], 3) if assigned else None,
        first_moved_s=round(min(first_moved), 3) if first_moved else None,
        survivor_pause_s=round(assigned[-1] - revoked[0], 3) if assigned and revoked else None,
        worst_wait_s=round(max(waits), 3) if waits else None,
        restarted_reads_s=restarted,
    )


def _spawn(group: Group, instance_id: str | None, log: Path) -> subprocess.Popen[bytes]:
    member = json.dumps(asdict(group))
    args = [sys.executable, "-m", "bench.membership", "--member", member, "--log", str(log)]
    if instance_id is not None:
        args += ["--instance-id", instance_id]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _member_forever(group: Group, instance_id: str | None, log: Path) -> None:
    member = await start_member(group, instance_id, log)
    assert member.task is not None
    await member.task


async def main_async(args: argparse.Namespace) -> list[Outcome]:
    outcomes = []
    with kafka_broker(args.bootstrap or "") as bootstrap:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for heartbeat_ms in args.heartbeat_ms:
            for case in args.cases:
                for _ in range(args.runs):
                    suffix = uuid.uuid4().hex[:8]
                    group = Group(
                        bootstrap, f"membership-{suffix}", f"membership-{suffix}",
                        heartbeat_ms, args.session_ms,
                    )  # fmt: skip
                    outcome = await run_case(case, group, args.restart_after, args.out.parent)
                    print(json.dumps(asdict(outcome)), flush=True)
                    outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.membership", description=__doc__)
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"of {CASES}; default: all")
    parser.add_argument("--bootstrap", default=None, help="Kafka (default: scripts/kafka)")
    parser.add_argument("--heartbeat-ms", type=int, nargs="+", default=[1000, 7500])
    parser.add_argument("--session-ms", type=int, default=30_000)
    parser.add_argument("--restart-after", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT_DIR / "membership.json")
    parser.add_argument("--member", help=argparse.SUPPRESS)  # a child member: its Group
    parser.add_argument("--instance-id", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.member:
        asyncio.run(_member_forever(Group(**json.loads(args.member)), args.instance_id, args.log))
        return 0
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}")
    args.cases = args.cases or list(CASES)
    outcomes = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
