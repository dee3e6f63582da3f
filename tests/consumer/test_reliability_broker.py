"""Fault injection: the broker stopped for 10 s and started again in the middle of a run.

The shared broker is never touched: the test starts its own broker with `scripts/kafka` (other
ports, a temporary home, the already-resolved jars), runs the service in-process against it,
stops that broker while records are in flight, waits 10 s, starts it again, and checks that the
service carried on by itself (no restart, no exit) and that every id got an ok result.

Meanwhile it checks what operators see: `/readyz` stays 200 (docs/OPERATIONS.md, "Broker
down", says why), and aiokafka's flood of repeated errors reaches the log collapsed to one line
per kind and interval, with counts that add up to every line it wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from consumer.config import Settings
from consumer.http import READY_PATH, make_app, start_http
from consumer.log_repeats import REPEATED_FIELD, RepeatCollapsingHandler
from consumer.testing.broker import JAVA, ScriptBroker
from consumer.testing.waiting import free_port, wait_until
from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.service_support import new_ids, red_image, set_up_service
from tests.kafka_support import InProcessService
from tests.reliability_support import duplicates, record_figures

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.skipif(JAVA is None, reason="a private broker needs Java (scripts/kafka)"),
]

DOWN_S = 10.0
BEFORE, AFTER = 600, 100
IMAGE_DELAY_S = 0.2  # with 16 in flight, about 80 images a second: the stop lands mid-run
LOG_WINDOW_S = 5.0  # shorter than the service's 30 s, so that the outage spans a few windows


class LibraryLines(logging.Handler):
    """Every WARNING-and-up line aiokafka writes, as the collapsing handler receives them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.kinds: Counter[tuple[str, int, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.kinds[(record.name, record.levelno, str(record.msg))] += 1


class RowFormatter(logging.Formatter):
    """One row per line written: the logger and how many repeats it stands for besides itself
    (tracebacks left out, so rows are lines)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.name}|{getattr(record, REPEATED_FIELD, 0)}"


@contextlib.contextmanager
def aiokafka_lines() -> Iterator[tuple[LibraryLines, io.StringIO]]:
    """aiokafka's lines, raw and through the service's collapsing handler."""
    raw, out = LibraryLines(), io.StringIO()
    collapsed = RepeatCollapsingHandler(out, window_s=LOG_WINDOW_S)
    collapsed.setLevel(logging.WARNING)
    collapsed.setFormatter(RowFormatter())
    logger = logging.getLogger("aiokafka")
    logger.addHandler(raw)
    logger.addHandler(collapsed)
    try:
        yield raw, out
    finally:
        logger.removeHandler(raw)
        logger.removeHandler(collapsed)
        collapsed.close()


class Readiness:
    """The service's /readyz, served as `birdwatch serve` serves it."""

    def __init__(self, service: InProcessService) -> None:
        self.port = free_port()
        self._service = service
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> Readiness:
        state = self._service.state
        app = make_app(self._service.metrics, lambda: not state.failed, lambda: state.ready)
        self._runner = await start_http(app, self.port, host="127.0.0.1")
        self._session = aiohttp.ClientSession()
        return self

    async def probe(self) -> int:
        assert self._session is not None
        async with self._session.get(f"http://127.0.0.1:{self.port}{READY_PATH}") as response:
            return response.status

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_broker_down_for_10_s_mid_run_the_service_recovers_by_itself(
    guarantee: str,
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    eos = guarantee == "exactly_once"
    broker = ScriptBroker.private(tmp_path / "kafka-home")
    try:
        first_start_s = await broker.start_async()
        setup = await set_up_service(
            broker.bootstrap,
            http_server,
            tiny_models,
            make_settings,
            f"brk-{guarantee[:3]}",
            partitions=3,
        )
        url = red_image(http_server, delay_s=IMAGE_DELAY_S)
        tuning: dict[str, Any] = {"processing_guarantee": guarantee, "max_in_flight": 16}
        if eos:
            # Longer than the outage: a transaction left open across it is not aborted (and
            # this producer fenced) by the restarted coordinator; see docs/RELIABILITY.md.
            tuning["transaction_timeout_ms"] = 60_000
        settings = setup.settings(session_timeout_ms=6000, **tuning)
        before = new_ids("brk-a", BEFORE)
        after = new_ids("brk-b", AFTER)
        logs_from = time.monotonic()
        with capture_logs() as logs, aiokafka_lines() as (raw_lines, collapsed):
            service = await InProcessService.start(settings)
            assert service.task is not None
            readiness = await Readiness(service).start()
            try:
                await wait_until(lambda: len(service.owned) == 3, 60, "the partitions assigned")
                ready_before = await readiness.probe()
                rebalances_before = service.sample("birdwatch_rebalances_total")
                await setup.produce(before, url)
                await wait_until(lambda: service.count("ok") >= 100, 60, "some results")
                # Records in flight: fetched, their results not yet durable (in EOS, until their
                # transaction commits).
                in_flight = service.in_flight
                # Stop while records are in flight.
                with contextlib.suppress(TimeoutError):
                    await wait_until(lambda: in_flight() > 0, 10, "work in flight", step=0.005)
                in_flight_at_stop = in_flight()
                ok_at_stop = service.count("ok")
                consumed_at_stop = service.sample("birdwatch_records_consumed_total")
                down_from = time.monotonic()
                client_logs_before = len(caplog.records)
                stop_s = await broker.stop_async()
                in_flight_when_down = in_flight()
                # Down for DOWN_S: the member must neither exit nor fail meanwhile.
                ok_when_stopped = service.count("ok")
                ready_while_down = []
                for _ in range(int(DOWN_S)):
                    await asyncio.sleep(1)
                    assert not service.task.done(), "the service exited while the broker was down"
                    assert not service.state.failed
                    ready_while_down.append(await readiness.probe())
                ok_while_down = service.count("ok") - ok_when_stopped
                restart_s = await broker.start_async()
                up_at = time.monotonic()
                ok_at_up = service.count("ok")
                client_logs = caplog.records[client_logs_before:]

                await setup.produce(after, url)
                await wait_until(
                    lambda: service.count("ok") > ok_at_up, 120, "a result after the restart"
                )
                first_result_s = time.monotonic() - up_at
                isolation = "read_committed" if eos else "read_uncommitted"
                await setup.wait_for_results([*before, *after], timeout_s=180, isolation=isolation)
                all_done_s = time.monotonic() - up_at
                assert not service.task.done(), "the service exited after the broker came back"
                assert not service.state.failed
                rebalances_after = service.sample("birdwatch_rebalances_total")
            finally:
                await readiness.close()
                stopped_in = await service.stop()
            results = await setup.results(isolation)
        logged_s = time.monotonic() - logs_from
    finally:
        await asyncio.to_thread(broker.remove)

    # Readiness stays up: the member is still in the group, and nothing would be gained by
    # taking every pod out of its Service at once (docs/OPERATIONS.md, "Broker down").
    assert ready_before == 200
    assert ready_while_down == [200] * int(DOWN_S)
    # aiokafka's flood, collapsed: at most one line per kind and window (plus the first), and
    # the counts account for every line it wrote.
    rows = [int(row.rpartition("|")[2]) for row in collapsed.getvalue().splitlines()]
    raw_total = sum(raw_lines.kinds.values())
    assert sum(1 + repeated for repeated in rows) == raw_total
    assert len(rows) <= len(raw_lines.kinds) * (logged_s / LOG_WINDOW_S + 2)

    per_id = Counter(r["id"] for r in results)
    lost = {*before, *after} - set(per_id)
    assert not lost
    assert {r["status"] for r in results} == {"ok"}
    if eos:
        assert per_id == Counter([*before, *after])
    events = Counter(str(e["event"]) for e in logs)
    assert events["shutdown_done"] == 1
    assert events["delivery_failed"] == 0
    # The service met failures while the broker was away (aiokafka reported them), and none was
    # fatal: they were retried (inside aiokafka, or by our resend and commit loops).
    assert client_logs, "no client failure was reported while the broker was down"
    assert events["delivery_failed"] == 0
    retried = events["produce_retry"] + events["commit_failed"] + events["transaction_failed"]
    record_figures(
        f"broker_restart_{guarantee}",
        {
            "guarantee": guarantee,
            "events": BEFORE + AFTER,
            "events_before_stop": BEFORE,
            "events_after_restart": AFTER,
            "faults_injected": 1,
            "fault": f"private broker stopped, {DOWN_S:g} s down, started again",
            "in_flight_at_stop": in_flight_at_stop,
            "in_flight_when_down": in_flight_when_down,
            "ok_at_stop": ok_at_stop,
            "consumed_at_stop": consumed_at_stop,
            "broker_first_start_s": round(first_start_s, 1),
            "broker_stop_s": round(stop_s, 1),
            "broker_restart_s": round(restart_s, 1),
            "unavailable_s": round(up_at - down_from, 1),
            "ok_results_while_down": ok_while_down,
            "first_result_after_restart_s": round(first_result_s, 1),
            "recovery_time_s": round(all_done_s, 1),
            "lost": len(lost),
            "duplicated": duplicates([r["id"] for r in results]),
            "rebalances_during_outage": rebalances_after - rebalances_before,
            "log_events": {
                k: events[k]
                for k in (
                    "produce_retry",
                    "commit_failed",
                    "transaction_failed",
                    "kafka_unavailable",
                    "partitions_revoked",
                    "partitions_assigned",
                )
            },
            "retried_failures": retried,
            "ready_probes_while_down": dict(Counter(ready_while_down)),
            "aiokafka_lines_raw": raw_total,
            "aiokafka_lines_collapsed": len(rows),
            "aiokafka_line_kinds": len(raw_lines.kinds),
            "log_window_s": LOG_WINDOW_S,
            "logged_s": round(logged_s, 1),
            # What aiokafka itself reported (WARNING and up) while the broker was away.
            "client_warnings_while_down": len(client_logs),
            "client_warning_kinds": dict(
                Counter(f"{r.levelname} {str(r.msg)[:60]}" for r in client_logs).most_common(6)
            ),
            "graceful_stop_s": round(stopped_in, 1),
        },
    )
