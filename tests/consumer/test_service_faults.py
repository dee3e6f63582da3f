"""Faults against the real broker: members stopped or SIGKILLed mid-stream, poison records.
Exactly-once under faults: test_service_faults_eos.py.

The member that is killed runs `birdwatch serve` in a child process; the others run in-process.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from consumer.kafka.outcomes import DLQ_REASON_HEADER
from consumer.testing.models import RED_CLASS
from consumer.testing.topics import TopicReader, event_value, produce, read_topic
from consumer.testing.waiting import wait_until
from tests.conftest import LoopbackServer
from tests.consumer.service_support import (
    ServiceSetupFactory,
    new_ids,
    ok_at_least,
    red_image,
)
from tests.images import HTML_PAGE
from tests.kafka_support import InProcessService, ServeProcess

pytestmark = pytest.mark.kafka

# The broker's minimum (group.min.session.timeout.ms): the group notices a dead member soonest.
SESSION_TIMEOUT_MS = 6000


async def test_stopped_and_killed_members_are_taken_over_without_losing_an_event(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer, tmp_path: Path
) -> None:
    setup = await service_setup("takeover", partitions=6)
    url = red_image(http_server, delay_s=0.2)
    # A small in-flight bound keeps every member busy for seconds: the kill lands mid-batch.
    tuning = {"session_timeout_ms": SESSION_TIMEOUT_MS, "max_in_flight": 6}
    env = setup.serve_env(**tuning)
    stopped = ServeProcess(env, tmp_path / "stopped.log")
    killed = ServeProcess(env, tmp_path / "killed.log")
    survivor = await InProcessService.start(setup.settings(**tuning))
    try:
        await stopped.wait_ready()
        await killed.wait_ready()
        await wait_until(
            lambda: len(survivor.owned) == 2, 45, "three members sharing six partitions"
        )
        ids = new_ids("takeover", 300)
        await setup.produce(ids, url)

        await wait_until(lambda: ok_at_least(stopped, 20), 60, "the member to stop doing some work")
        assert await stopped.terminate(timeout_s=60) == 0
        await wait_until(lambda: ok_at_least(killed, 40), 60, "the member to kill doing more work")
        in_flight = await killed.metric("birdwatch_records_in_flight")
        killed.kill()
        killed_at = time.monotonic()
        takeover_s = await wait_until(
            lambda: len(survivor.owned) == 6, 45, "the survivor owning all six partitions"
        )
        await setup.wait_for_results(ids, timeout_s=120)
        complete_s = time.monotonic() - killed_at
    finally:
        stopped.close()
        killed.close()
        await survivor.stop()

    results = await setup.results()
    per_id = Counter(r["id"] for r in results)
    assert set(per_id) == set(ids)
    assert {r["status"] for r in results} == {"ok"}
    assert {r["predictions"][0]["label_id"] for r in results} == {RED_CLASS}
    # The stopped member drained, committed and left on SIGTERM.
    done = [e for e in stopped.log_events() if e["event"] == "shutdown_done"]
    assert [e["unfinished"] for e in done] == [0]
    assert "signal_received" in {e["event"] for e in stopped.log_events()}
    print(
        f"takeover: in flight at SIGKILL {in_flight:g}; survivor owned all partitions "
        f"{takeover_s:.1f} s after it, every id answered after {complete_s:.1f} s; "
        f"{len(results) - len(ids)} duplicate results"
    )


async def test_poison_records_get_error_results_or_dead_letters_and_the_consumer_goes_on(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    setup = await service_setup("poison", partitions=2)
    names = setup.names
    red = red_image(http_server)
    page = http_server.add_bytes("/img/page.jpg", HTML_PAGE, "image/jpeg")
    missing = http_server.url("/img/missing.jpg")
    service = await InProcessService.start(setup.settings())
    try:
        await wait_until(lambda: len(service.owned) == 2, 30, "the member owning both partitions")
        dead: dict[bytes, bytes | None] = {
            b"not-json": b"\x00\xffnot json at all",
            b"no-id": b'{"url": "http://127.0.0.1/x.jpg"}',
            b"array": b"[1, 2, 3]",
            b"empty": b"",
            b"tombstone": None,
        }
        answered = {
            "good-1": (event_value("good-1", red), "ok", None),
            "bad-scheme": (
                event_value("bad-scheme", "file:///etc/passwd"),
                "error",
                "invalid_event",
            ),
            "no-url": (b'{"id": "no-url"}', "error", "invalid_event"),
            "missing": (event_value("missing", missing), "error", "http_status"),
            "html": (event_value("html", page), "error", "not_an_image"),
            "good-2": (event_value("good-2", red), "ok", None),
        }
        # Poison and good records interleaved on the same partitions.
        records: list[tuple[bytes | None, bytes | None]]
        records = [(b"k", value) for value, _, _ in answered.values()]
        records[1:1] = [(key, value) for key, value in dead.items()]
        await produce(setup.bootstrap, names.input, records)

        async with (
            TopicReader(setup.bootstrap, names.results) as results,
            TopicReader(setup.bootstrap, names.dlq) as dlq,
        ):
            await results.wait_for_ids(set(answered), timeout_s=60)
            await dlq.wait_for(lambda recs: len(recs) >= len(dead), timeout_s=30)
            # Later events are still answered: the consumer kept going.
            await setup.produce(["later"], red)
            await results.wait_for_ids({"later"}, timeout_s=30)
            dlq_records = list(dlq.records)
    finally:
        await service.stop()

    by_id = {r["id"]: r for r in await setup.results()}
    assert set(by_id) == {*answered, "later"}
    for event_id, (_, status, code) in answered.items():
        assert by_id[event_id]["status"] == status, event_id
        assert (by_id[event_id]["error"] or {}).get("code") == code, event_id
    assert by_id["later"]["status"] == "ok"
    assert by_id["good-1"]["predictions"][0]["label_id"] == RED_CLASS

    assert len(await read_topic(setup.bootstrap, names.dlq)) == len(dead)
    copies = {r.key: r for r in dlq_records}
    assert set(copies) == set(dead)
    for key, value in dead.items():
        headers = dict(copies[key].headers)
        assert headers[DLQ_REASON_HEADER], key
        assert headers["birdwatch-error-code"] == b"invalid_event"
        assert headers["birdwatch-source"].startswith(names.input.encode())
        assert copies[key].value == (value or b"")
    assert service.sample("birdwatch_dlq_records_total") == len(dead)
    assert service.service.delivery.tracker.unfinished() == 0
