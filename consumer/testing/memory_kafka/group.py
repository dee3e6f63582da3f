"""A consumer group's coordination, the way aiokafka's eager protocol runs it.

On every membership change each member first gets `on_partitions_revoked` with everything it
had (an empty set on its first join), all members concurrently, and the group waits for them
all; then the partitions are dealt out round-robin in join order and each member gets
`on_partitions_assigned` with its whole new assignment. A member that stops leaves without a
revoke callback, as aiokafka's does. Listener errors are logged and swallowed, as there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import structlog
from aiokafka import TopicPartition

if TYPE_CHECKING:
    from consumer.testing.memory_kafka.cluster import MemoryKafka

log = structlog.get_logger(__name__)


class Member(Protocol):
    """What the group needs of a `MemoryConsumer`."""

    @property
    def topics(self) -> list[str]: ...

    async def revoke(self) -> None: ...

    async def assign(self, partitions: set[TopicPartition], generation: int) -> None: ...


class Group:
    """Members of one group id and the generation of their current assignment."""

    def __init__(self, group_id: str, kafka: MemoryKafka) -> None:
        self.group_id = group_id
        self._kafka = kafka
        self.members: list[Member] = []
        self.generation = 0
        self.rebalances = 0
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def join(self, member: Member) -> None:
        self.members.append(member)
        self._schedule()

    def leave(self, member: Member) -> None:
        if member in self.members:
            self.members.remove(member)
            self._schedule()

    def _schedule(self) -> None:
        # In the background, as the coordinator's task does in aiokafka.
        task = asyncio.create_task(self.rebalance(), name=f"rebalance-{self.group_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait until no rebalance is scheduled or running."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def rebalance(
        self, assignment: Mapping[Member, set[TopicPartition]] | None = None
    ) -> None:
        """Revoke everything, then deal the partitions out (or hand out `assignment`)."""
        async with self._lock:
            members = list(self.members)
            await asyncio.gather(*(m.revoke() for m in members))
            members = [m for m in members if m in self.members]  # some left meanwhile
            self.generation += 1
            self.rebalances += 1
            if assignment is None:
                plan = self._deal(members)
            else:
                plan = {i: set(assignment.get(m, set())) for i, m in enumerate(members)}
            await asyncio.gather(
                *(m.assign(plan[i], self.generation) for i, m in enumerate(members))
            )
            self._kafka.notify()

    def _deal(self, members: list[Member]) -> dict[int, set[TopicPartition]]:
        plan: dict[int, set[TopicPartition]] = {i: set() for i in range(len(members))}
        topics = sorted({t for m in members for t in m.topics})
        for topic in topics:
            takers = [i for i, m in enumerate(members) if topic in m.topics]
            for n, tp in enumerate(self._kafka.partitions(topic)):
                plan[takers[n % len(takers)]].add(tp)
        return {i: plan[i] for i in plan}


async def call_listener(
    group_id: str,
    callback: Callable[[set[TopicPartition]], object],
    partitions: set[TopicPartition],
) -> None:
    """Run a listener callback (awaiting it when a coroutine); its errors are logged, not
    raised, as aiokafka does."""
    try:
        result = callback(set(partitions))
        if asyncio.iscoroutine(result):
            await result
    except Exception:
        log.exception(
            "listener_failed", callback=getattr(callback, "__name__", "?"), group=group_id
        )
