"""Members of a consumer group on the in-memory Kafka, with fake images and a fake model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import stamina

from consumer.config import Settings
from consumer.testing import FakeFetcher, MemberRun, MemoryKafka

StartMember = Callable[..., Awaitable[MemberRun]]

# Small enough that a test takes milliseconds, large enough for a busy machine.
FAST = {
    "commit_interval_ms": 5,
    "max_batch_delay_ms": 1,
    "shutdown_timeout_s": 5,
    "revoke_timeout_s": 5,
    "summary_interval_s": 60,
    "decode_threads": 1,
}


@pytest.fixture
def kafka() -> MemoryKafka:
    kafka = MemoryKafka(default_partitions=2)
    kafka.create_topic("bird-images", 2)
    return kafka


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher()


@pytest.fixture
async def start_member(
    kafka: MemoryKafka, fetcher: FakeFetcher, make_settings: Callable[..., Settings]
) -> AsyncIterator[StartMember]:
    """`await start_member(**settings)`: a running member of the group "birdwatch"; every
    member still running at the end of the test is stopped."""
    members: list[MemberRun] = []

    async def start(**overrides: object) -> MemberRun:
        settings = make_settings(**{**FAST, **overrides})
        member = await MemberRun.start(settings, kafka, fetcher)
        members.append(member)
        return member

    # Retries without their waits; enough attempts for the tests that count them.
    with stamina.set_testing(True, attempts=20):
        yield start
        for member in members:
            if member.task is not None and not member.task.done():
                fetcher.release()
                await member.stop()
