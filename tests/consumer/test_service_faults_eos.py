"""Exactly-once against the real broker under faults: a SIGKILL mid-batch, slow and stalled
commits, a fenced member.

The member that is killed runs `birdwatch serve` in a child process; the others run in-process.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from consumer.kafka.delivery import DeliveryFailedError
from consumer.testing.waiting import wait_until
from tests.conftest import LoopbackServer
from tests.consumer.service_support import (
    ServiceSetupFactory,
    new_ids,
    ok_at_least,
    red_image,
)
from tests.kafka_support import InProcessService, ServeProcess

pytestmark = pytest.mark.kafka

# The broker's minimum (group.min.session.timeout.ms): the group notices a dead member soonest.
SESSION_TIMEOUT_MS = 6000


def slow_down_one_commit(
    member: InProcessService, *, after_ok: int, delay_s: float, late_answer: bool
) -> asyncio.Event:
    """Make one transaction commit of `member`, the first once it has `after_ok` ok results,
    take `delay_s` longer: before the broker is asked (a stalled commit) or, with `late_answer`,
    after the broker has committed (its answer comes late, as from a busy broker). Returns an
    event set when that delay starts."""
    producer = member.service.producer
    commit_transaction = producer.commit_transaction
    delayed = asyncio.Event()

    async def delay_once() -> None:
        if member.count("ok") >= after_ok and not delayed.is_set():
            delayed.set()
            await asyncio.sleep(delay_s)

    async def commit() -> None:
        if not late_answer:
            await delay_once()
        await commit_transaction()
        if late_answer:
            await delay_once()

    producer.commit_transaction = commit
    return delayed


async def test_exactly_once_survives_a_sigkill_mid_batch(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer, tmp_path: Path
) -> None:
    setup = await service_setup("eos", partitions=6)
    url = red_image(http_server, delay_s=0.2)
    tuning = {
        "processing_guarantee": "exactly_once",
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        # The broker aborts the dead member's open transaction once this has passed.
        "transaction_timeout_ms": 10_000,
        "max_in_flight": 6,
    }
    # Its transactions stay open a second before each commit, so the kill lands inside one.
    killed = ServeProcess(setup.serve_env(**tuning), tmp_path / "killed.log", slow_commits_s=1.0)
    survivor = await InProcessService.start(setup.settings(**tuning))
    try:
        await killed.wait_ready()
        await wait_until(lambda: len(survivor.owned) == 3, 45, "two members sharing six partitions")
        # Events only on the doomed member's partitions: an open transaction is then its own.
        doomed = sorted({*range(6)} - {tp.partition for tp in survivor.owned})
        ids = new_ids("eos", 200)
        await setup.produce(ids, url, doomed)

        await wait_until(
            lambda: ok_at_least(killed, 1), 60, "the doomed member's first transaction"
        )
        # Kill it inside a transaction: results written, not committed.
        assert await setup.transaction_open(within_s=20, step=0.05)
        killed.kill()
        killed_at = time.monotonic()
        takeover_s = await wait_until(
            lambda: len(survivor.owned) == 6, 45, "the survivor owning all six partitions"
        )
        await setup.wait_for_results(ids, timeout_s=120, isolation="read_committed")
        complete_s = time.monotonic() - killed_at
    finally:
        killed.close()
        await survivor.stop()

    # Wait until no transaction is left open on the results topic (the dead one is aborted).
    visible, written = await setup.settled_results()

    assert Counter(r["id"] for r in visible) == Counter(ids)
    assert {r["status"] for r in visible} == {"ok"}
    # The dead member's open transaction had results in it: written, aborted, never visible.
    aborted = Counter(r["id"] for r in written) - Counter(r["id"] for r in visible)
    assert aborted
    assert set(aborted) <= set(ids)
    print(
        f"exactly-once: survivor owned all partitions {takeover_s:.1f} s after SIGKILL, "
        f"every id committed after {complete_s:.1f} s; {len(written) - len(visible)} results "
        f"written but aborted"
    )


async def test_exactly_once_stop_during_a_slow_commit_then_restart_answers_each_id_once(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    """Regression: the stop cancelled the committer while a transaction was committing; its
    outcomes were then published again by the final commit."""
    setup = await service_setup("eosstop", partitions=3)
    url = red_image(http_server, delay_s=0.1)
    settings = setup.settings(processing_guarantee="exactly_once", max_in_flight=8)
    ids = new_ids("eosstop", 60)
    await setup.produce(ids, url)
    first = await InProcessService.start(settings)
    # The broker's answer to one commit comes late (a busy broker): the stop lands meanwhile.
    late_answer = slow_down_one_commit(first, after_ok=8, delay_s=2, late_answer=True)
    try:
        await wait_until(late_answer.is_set, 60, "a commit answered late")
    finally:
        await first.stop()
    assert first.service.delivery.tracker.unfinished() == 0
    done_by_first = await setup.results("read_committed")
    assert len(done_by_first) == len({r["id"] for r in done_by_first}) > 8

    second = await InProcessService.start(settings)
    try:
        await setup.wait_for_results(ids, timeout_s=60, isolation="read_committed")
    finally:
        await second.stop()
    results = await setup.results("read_committed")
    assert Counter(r["id"] for r in results) == Counter(ids)
    assert second.count("ok") == len(ids) - len(done_by_first)


async def test_exactly_once_results_waiting_for_a_stalled_commit_count_as_in_flight(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    """Regression: results waiting for their transaction did not count against max_in_flight,
    so a stalled commit let the member read (and hold) the whole backlog."""
    setup = await service_setup("eosbound", partitions=2)
    url = red_image(http_server, delay_s=0.02)
    settings = setup.settings(processing_guarantee="exactly_once", max_in_flight=8)
    ids = new_ids("eosbound", 80)
    service = await InProcessService.start(settings)
    stalled = slow_down_one_commit(service, after_ok=8, delay_s=3, late_answer=False)
    try:
        await setup.produce(ids, url)
        await wait_until(stalled.is_set, 30, "the stalled commit")
        await asyncio.sleep(1.5)
        consumed = service.sample("birdwatch_records_consumed_total")
        committed = service.count("ok")
        assert consumed - committed <= 8
        assert service.sample("birdwatch_intake_paused") == 1
        await setup.wait_for_results(ids, timeout_s=60, isolation="read_committed")
    finally:
        await service.stop()
    results = await setup.results("read_committed")
    assert Counter(r["id"] for r in results) == Counter(ids)


async def test_a_fenced_exactly_once_member_fails_and_its_replacement_takes_over(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    """Regression: a fenced producer left the member consuming (and holding) records forever
    without producing, healthy; it now stops with DeliveryFailedError (exit 1 for the CLI)."""
    setup = await service_setup("fenced", partitions=2)
    url = red_image(http_server, delay_s=0.02)
    settings = setup.settings(
        processing_guarantee="exactly_once", max_in_flight=8, instance_id="pod-0"
    )
    early = new_ids("fenced-early", 10)
    late = new_ids("fenced-late", 60)
    zombie = await InProcessService.start(settings)
    await wait_until(lambda: len(zombie.owned) == 2, 30, "the partitions assigned")
    await setup.produce(early, url)
    await wait_until(lambda: zombie.count("ok") == 10, 30, "the early events answered")

    # A new member with the same instance id (a restarted pod) takes the transactional id.
    fencer = AIOKafkaProducer(
        bootstrap_servers=setup.bootstrap,
        transactional_id=f"birdwatch-{setup.names.group}-pod-0",
    )
    await fencer.start()
    await fencer.stop()
    await setup.produce(late, url)
    assert zombie.task is not None
    await asyncio.wait({zombie.task}, timeout=30)
    assert zombie.task.done()
    with pytest.raises(DeliveryFailedError, match="ProducerFenced"):
        await zombie.stop()
    assert zombie.state.failed
    assert zombie.sample("birdwatch_records_consumed_total") <= 10 + 8

    replacement = await InProcessService.start(settings)
    try:
        await setup.wait_for_results([*early, *late], timeout_s=60, isolation="read_committed")
    finally:
        await replacement.stop()
    results = await setup.results("read_committed")
    assert Counter(r["id"] for r in results) == Counter([*early, *late])
