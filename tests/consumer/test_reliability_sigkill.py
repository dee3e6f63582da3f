"""Fault injection: a 2,000-event run during which one member is SIGKILLed and restarted three
times, in at-least-once and in exactly-once mode, against the real broker.

Two members share six partitions: a survivor in this process and a victim, `birdwatch serve` in
a child process. The events arrive as a stream (60 a second); the victim is killed mid-stream
(records in flight, in EOS a transaction open) and started again at once as a new incarnation
(no instance id: a new member and a new transactional id each time). Figures go to
.cache/reliability/ for docs/RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from consumer.testing.models import RED_CLASS
from consumer.testing.waiting import wait_until
from tests.conftest import LoopbackServer
from tests.consumer.service_support import (
    ServiceSetupFactory,
    new_ids,
    ok_at_least,
    red_image,
)
from tests.kafka_support import InProcessService, ServeProcess
from tests.reliability_support import duplicates, produce_paced, record_figures

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 2000
KILLS = 3
PARTITIONS = 6
RATE = 60.0  # events a second: the stream lasts about 33 s, longer than the three kills
# Each incarnation does this much before it is killed: the kill lands mid-stream.
WORK_BEFORE_KILL = 40
WAIT_BEFORE_KILL_S = 20.0
SESSION_TIMEOUT_MS = 6000  # the broker's minimum: a dead member is noticed soonest


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_sigkill_and_restart_three_times_during_a_2000_event_run(
    guarantee: str,
    service_setup: ServiceSetupFactory,
    http_server: LoopbackServer,
    tmp_path: Path,
) -> None:
    eos = guarantee == "exactly_once"
    setup = await service_setup(f"kill9-{guarantee[:3]}", PARTITIONS)
    # A slightly slow host and a small in-flight bound: each member has records in flight.
    url = red_image(http_server, delay_s=0.05)
    tuning: dict[str, Any] = {
        "processing_guarantee": guarantee,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "max_in_flight": 16,
    }
    if eos:
        # The broker aborts a killed incarnation's open transaction once this has passed.
        tuning["transaction_timeout_ms"] = 10_000
    env = setup.serve_env(**tuning)
    survivor = await InProcessService.start(setup.settings(**tuning))
    # In EOS the victim's transactions stay open half a second before each commit (a slow
    # client), so most kills land inside one: its results are written, then aborted.
    commit_delay_s = 0.5 if eos else None
    victim = ServeProcess(env, tmp_path / "victim-0.log", slow_commits_s=commit_delay_s)
    incarnations = [victim]
    kills: list[dict[str, Any]] = []
    stream: asyncio.Task[float] | None = None
    isolation = "read_committed" if eos else "read_uncommitted"
    try:
        await victim.wait_ready(timeout_s=90)
        await wait_until(lambda: len(survivor.owned) == 3, 60, "two members sharing 6 partitions")
        ids = new_ids("k9", EVENTS)
        started = time.monotonic()
        # A stream, not a backlog: every partition keeps getting work while the kills happen.
        stream = asyncio.create_task(
            produce_paced(setup.bootstrap, setup.names.input, [(eid, url) for eid in ids], RATE)
        )
        for n in range(1, KILLS + 1):
            # Kill once this incarnation is busy: it has done some work (or, should the stream
            # have left it idle, after a bounded wait anyway).
            with contextlib.suppress(TimeoutError):
                await wait_until(
                    functools.partial(ok_at_least, victim, WORK_BEFORE_KILL),
                    WAIT_BEFORE_KILL_S,
                    f"incarnation {n - 1} doing {WORK_BEFORE_KILL} events",
                    step=0.05,
                )
            in_transaction = eos and await setup.transaction_open()
            in_flight = await victim.metric("birdwatch_records_in_flight")
            done = await victim.metric("birdwatch_results_produced_total", status="ok")
            victim.kill()
            killed_at = time.monotonic()
            victim = ServeProcess(env, tmp_path / f"victim-{n}.log", slow_commits_s=commit_delay_s)
            incarnations.append(victim)
            rejoined_s = await victim.wait_ready(timeout_s=90)
            kills.append(
                {
                    "at_s": round(killed_at - started, 1),
                    "in_flight": in_flight,
                    "transaction_open": in_transaction,
                    "done_by_killed": done,
                    "rejoined_s": round(rejoined_s, 1),
                }
            )
        stream_s = await asyncio.wait_for(stream, 120)
        await setup.wait_for_results(ids, timeout_s=240, isolation=isolation)
        wall_s = time.monotonic() - started
        assert await victim.terminate(timeout_s=60) == 0
    finally:
        if stream is not None and not stream.done():
            stream.cancel()
        for process in incarnations:
            process.close()
        await survivor.stop()
    assert not survivor.state.failed

    if eos:
        visible, written = await setup.settled_results()
    else:
        visible = written = await setup.results()
    per_id = Counter(r["id"] for r in visible)
    lost = set(ids) - set(per_id)
    assert not lost
    assert set(per_id) == set(ids)
    assert {r["status"] for r in visible} == {"ok"}
    assert {r["predictions"][0]["label_id"] for r in visible} == {RED_CLASS}
    if eos:
        # read_committed sees every id exactly once; what the killed incarnations had written
        # in their open transactions was aborted.
        assert per_id == Counter(ids)
    killed_logs = [e for p in incarnations[:-1] for e in p.log_events()]
    assert not [e for e in killed_logs if e.get("event") == "shutdown_started"]

    record_figures(
        f"sigkill_{guarantee}",
        {
            "guarantee": guarantee,
            "events": EVENTS,
            "partitions": PARTITIONS,
            "members": 2,
            "faults_injected": len(kills),
            "fault": "SIGKILL of one `birdwatch serve` member, restarted at once",
            "kills": kills,
            "lost": len(lost),
            "duplicated_visible": duplicates([r["id"] for r in visible]),
            "results_written": len(written),
            "written_but_aborted": len(written) - len(visible),
            "survivor_rebalances": survivor.sample("birdwatch_rebalances_total"),
            "stream_s": round(stream_s, 1),
            "stream_rate_per_s": RATE,
            "wall_time_s": round(wall_s, 1),
            "session_timeout_ms": SESSION_TIMEOUT_MS,
            "transaction_timeout_ms": tuning.get("transaction_timeout_ms"),
            "victim_commit_delay_s": commit_delay_s,
        },
    )
