"""Faults against the real broker: members stopped or SIGKILLed mid-stream, poison records.

The member that is killed runs `birdwatch serve` in a child process; the others run in-process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from consumer.config import Settings
from consumer.delivery import DeliveryFailedError
from consumer.service import DLQ_REASON_HEADER
from tests.conftest import LoopbackServer, TinyModels
from tests.images import HTML_PAGE, RED, solid_jpeg
from tests.kafka_support import (
    InProcessService,
    ServeProcess,
    TopicReader,
    create_service_topics,
    event_value,
    produce,
    produce_events,
    read_topic,
    results_of,
    serve_env,
    serve_model,
    unique_names,
    wait_until,
)
from tests.support.models import RED_CLASS

pytestmark = pytest.mark.kafka

SettingsFactory = Callable[..., Settings]

# The broker's minimum (group.min.session.timeout.ms): the group notices a dead member soonest.
SESSION_TIMEOUT_MS = 6000


def slow_red(server: LoopbackServer, delay_s: float) -> str:
    return server.add_bytes(
        "/img/slow.jpg", solid_jpeg(RED, (64, 48)), "image/jpeg", delay_s=delay_s
    )


async def test_stopped_and_killed_members_are_taken_over_without_losing_an_event(
    kafka_bootstrap: str,
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    names = unique_names("takeover")
    await create_service_topics(kafka_bootstrap, names, partitions=6)
    model = serve_model(http_server, tiny_models)
    url = slow_red(http_server, delay_s=0.2)
    # A small in-flight bound keeps every member busy for seconds: the kill lands mid-batch.
    tuning = {"session_timeout_ms": SESSION_TIMEOUT_MS, "max_in_flight": 6}
    env = serve_env(kafka_bootstrap, names, model, **tuning)
    stopped = ServeProcess(env, tmp_path / "stopped.log")
    killed = ServeProcess(env, tmp_path / "killed.log")
    survivor = await InProcessService.start(
        make_settings(
            kafka_bootstrap_servers=kafka_bootstrap, **model, **names.settings(), **tuning
        )
    )
    try:
        await stopped.wait_ready()
        await killed.wait_ready()
        await wait_until(
            lambda: len(survivor.owned) == 2, 45, "three members sharing six partitions"
        )
        ids = [f"takeover-{i}-{uuid.uuid4().hex[:8]}" for i in range(300)]
        await produce_events(kafka_bootstrap, names.input, ((eid, url) for eid in ids))

        await wait_until(
            lambda: metric_at_least(stopped, 20), 60, "the member to stop doing some work"
        )
        assert await stopped.terminate(timeout_s=60) == 0
        await wait_until(
            lambda: metric_at_least(killed, 40), 60, "the member to kill doing more work"
        )
        in_flight = await killed.metric("birdwatch_records_in_flight")
        killed.kill()
        killed_at = time.monotonic()
        takeover_s = await wait_until(
            lambda: len(survivor.owned) == 6, 45, "the survivor owning all six partitions"
        )
        async with TopicReader(kafka_bootstrap, names.results) as reader:
            await reader.wait_for_ids(set(ids), timeout_s=120)
        complete_s = time.monotonic() - killed_at
    finally:
        stopped.close()
        killed.close()
        await survivor.stop()

    results = results_of(await read_topic(kafka_bootstrap, names.results))
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


async def metric_at_least(process: ServeProcess, count: float) -> bool:
    return await process.metric("birdwatch_results_produced_total", status="ok") >= count


async def test_exactly_once_survives_a_sigkill_mid_batch(
    kafka_bootstrap: str,
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    names = unique_names("eos")
    await create_service_topics(kafka_bootstrap, names, partitions=6)
    model = serve_model(http_server, tiny_models)
    url = slow_red(http_server, delay_s=0.2)
    tuning = {
        "processing_guarantee": "exactly_once",
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        # The broker aborts the dead member's open transaction once this has passed.
        "transaction_timeout_ms": 10_000,
        "max_in_flight": 6,
    }
    # Its transactions stay open a second before each commit, so the kill lands inside one.
    killed = ServeProcess(
        serve_env(kafka_bootstrap, names, model, **tuning),
        tmp_path / "killed.log",
        slow_commits_s=1.0,
    )
    survivor = await InProcessService.start(
        make_settings(
            kafka_bootstrap_servers=kafka_bootstrap, **model, **names.settings(), **tuning
        )
    )
    try:
        await killed.wait_ready()
        await wait_until(lambda: len(survivor.owned) == 3, 45, "two members sharing six partitions")
        # Events only on the doomed member's partitions: an open transaction is then its own.
        doomed = sorted({*range(6)} - {tp.partition for tp in survivor.owned})
        ids = [f"eos-{i}-{uuid.uuid4().hex[:8]}" for i in range(200)]
        await produce_events(kafka_bootstrap, names.input, ((eid, url) for eid in ids), doomed)

        await wait_until(
            lambda: metric_at_least(killed, 1), 60, "the doomed member's first transaction"
        )
        # Kill it inside a transaction: results written, not committed.
        async with (
            TopicReader(kafka_bootstrap, names.results, "read_committed") as committed,
            TopicReader(kafka_bootstrap, names.results) as everything,
        ):

            async def transaction_open() -> bool:
                return await committed.end_offsets() != await everything.end_offsets()

            await wait_until(transaction_open, 20, "an open transaction", step=0.05)
            killed.kill()
            killed_at = time.monotonic()
        takeover_s = await wait_until(
            lambda: len(survivor.owned) == 6, 45, "the survivor owning all six partitions"
        )
        async with TopicReader(kafka_bootstrap, names.results, "read_committed") as reader:
            await reader.wait_for_ids(set(ids), timeout_s=120)
        complete_s = time.monotonic() - killed_at
    finally:
        killed.close()
        await survivor.stop()

    # Wait until no transaction is left open on the results topic (the dead one is aborted).
    async with (
        TopicReader(kafka_bootstrap, names.results, "read_committed") as committed,
        TopicReader(kafka_bootstrap, names.results) as everything,
    ):

        async def settled() -> bool:
            return await committed.end_offsets() == await everything.end_offsets()

        await wait_until(settled, 60, "the dead member's transaction to be aborted", step=0.5)
        visible = results_of(await committed.read_to_end())
        written = results_of(await everything.read_to_end())

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
    kafka_bootstrap: str,
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: SettingsFactory,
) -> None:
    """Regression: the stop cancelled the committer while a transaction was committing; its
    outcomes were then published again by the final commit."""
    names = unique_names("eosstop")
    await create_service_topics(kafka_bootstrap, names, partitions=3)
    model = serve_model(http_server, tiny_models)
    url = slow_red(http_server, delay_s=0.1)
    settings = make_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        **model,
        **names.settings(),
        processing_guarantee="exactly_once",
        max_in_flight=8,
    )
    ids = [f"eosstop-{i}-{uuid.uuid4().hex[:8]}" for i in range(60)]
    await produce_events(kafka_bootstrap, names.input, ((eid, url) for eid in ids))
    first = await InProcessService.start(settings)
    # The broker's answer to one commit comes late (a busy broker): the stop lands meanwhile.
    producer = first.service.producer
    commit_transaction = producer.commit_transaction
    late_answer = asyncio.Event()

    async def commit_answered_late() -> None:
        await commit_transaction()
        if first.count("ok") >= 8 and not late_answer.is_set():
            late_answer.set()
            await asyncio.sleep(2)

    producer.commit_transaction = commit_answered_late
    try:
        await wait_until(late_answer.is_set, 60, "a commit answered late")
    finally:
        await first.stop()
    assert first.service.delivery.tracker.unfinished() == 0
    done_by_first = results_of(await read_topic(kafka_bootstrap, names.results, "read_committed"))
    assert len(done_by_first) == len({r["id"] for r in done_by_first}) > 8

    second = await InProcessService.start(settings)
    try:
        async with TopicReader(kafka_bootstrap, names.results, "read_committed") as reader:
            await reader.wait_for_ids(set(ids), timeout_s=60)
    finally:
        await second.stop()
    results = results_of(await read_topic(kafka_bootstrap, names.results, "read_committed"))
    assert Counter(r["id"] for r in results) == Counter(ids)
    assert second.count("ok") == len(ids) - len(done_by_first)


async def test_exactly_once_results_waiting_for_a_stalled_commit_count_as_in_flight(
    kafka_bootstrap: str,
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: SettingsFactory,
) -> None:
    """Regression: results waiting for their transaction did not count against max_in_flight,
    so a stalled commit let the member read (and hold) the whole backlog."""
    names = unique_names("eosbound")
    await create_service_topics(kafka_bootstrap, names, partitions=2)
    model = serve_model(http_server, tiny_models)
    url = slow_red(http_server, delay_s=0.02)
    settings = make_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        **model,
        **names.settings(),
        processing_guarantee="exactly_once",
        max_in_flight=8,
    )
    ids = [f"eosbound-{i}-{uuid.uuid4().hex[:8]}" for i in range(80)]
    service = await InProcessService.start(settings)
    producer = service.service.producer
    commit_transaction = producer.commit_transaction
    stalled = asyncio.Event()

    async def commit_stalling_once() -> None:
        if service.count("ok") >= 8 and not stalled.is_set():
            stalled.set()
            await asyncio.sleep(3)
        await commit_transaction()

    producer.commit_transaction = commit_stalling_once
    try:
        await produce_events(kafka_bootstrap, names.input, ((eid, url) for eid in ids))
        await wait_until(stalled.is_set, 30, "the stalled commit")
        await asyncio.sleep(1.5)
        consumed = service.metrics.records_consumed._value.get()
        committed = service.count("ok")
        assert consumed - committed <= 8
        assert service.metrics.paused._value.get() == 1
        async with TopicReader(kafka_bootstrap, names.results, "read_committed") as reader:
            await reader.wait_for_ids(set(ids), timeout_s=60)
    finally:
        await service.stop()
    results = results_of(await read_topic(kafka_bootstrap, names.results, "read_committed"))
    assert Counter(r["id"] for r in results) == Counter(ids)


async def test_a_fenced_exactly_once_member_fails_and_its_replacement_takes_over(
    kafka_bootstrap: str,
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: SettingsFactory,
) -> None:
    """Regression: a fenced producer left the member consuming (and holding) records forever
    without producing, healthy; it now stops with DeliveryFailedError (exit 1 for the CLI)."""
    names = unique_names("fenced")
    await create_service_topics(kafka_bootstrap, names, partitions=2)
    model = serve_model(http_server, tiny_models)
    url = slow_red(http_server, delay_s=0.02)
    settings = make_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        **model,
        **names.settings(),
        processing_guarantee="exactly_once",
        max_in_flight=8,
        instance_id="pod-0",
    )
    early = [f"fenced-early-{i}-{uuid.uuid4().hex[:8]}" for i in range(10)]
    late = [f"fenced-late-{i}-{uuid.uuid4().hex[:8]}" for i in range(60)]
    zombie = await InProcessService.start(settings)
    await wait_until(lambda: len(zombie.owned) == 2, 30, "the partitions assigned")
    await produce_events(kafka_bootstrap, names.input, ((eid, url) for eid in early))
    await wait_until(lambda: zombie.count("ok") == 10, 30, "the early events answered")

    # A new member with the same instance id (a restarted pod) takes the transactional id.
    fencer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"birdwatch-{names.group}-pod-0"
    )
    await fencer.start()
    await fencer.stop()
    await produce_events(kafka_bootstrap, names.input, ((eid, url) for eid in late))
    assert zombie.task is not None
    await asyncio.wait({zombie.task}, timeout=30)
    assert zombie.task.done()
    with pytest.raises(DeliveryFailedError, match="ProducerFenced"):
        await zombie.stop()
    assert zombie.state.failed
    assert zombie.metrics.records_consumed._value.get() <= 10 + 8

    replacement = await InProcessService.start(settings)
    try:
        async with TopicReader(kafka_bootstrap, names.results, "read_committed") as reader:
            await reader.wait_for_ids({*early, *late}, timeout_s=60)
    finally:
        await replacement.stop()
    results = results_of(await read_topic(kafka_bootstrap, names.results, "read_committed"))
    assert Counter(r["id"] for r in results) == Counter([*early, *late])


async def test_poison_records_get_error_results_or_dead_letters_and_the_consumer_goes_on(
    kafka_bootstrap: str,
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: SettingsFactory,
) -> None:
    names = unique_names("poison")
    await create_service_topics(kafka_bootstrap, names, partitions=2)
    model = serve_model(http_server, tiny_models)
    red = http_server.add_bytes("/img/red.jpg", solid_jpeg(RED, (64, 48)), "image/jpeg")
    page = http_server.add_bytes("/img/page.jpg", HTML_PAGE, "image/jpeg")
    missing = http_server.url("/img/missing.jpg")
    settings = make_settings(kafka_bootstrap_servers=kafka_bootstrap, **model, **names.settings())
    service = await InProcessService.start(settings)
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
        await produce(kafka_bootstrap, names.input, records)

        async with (
            TopicReader(kafka_bootstrap, names.results) as results,
            TopicReader(kafka_bootstrap, names.dlq) as dlq,
        ):
            await results.wait_for_ids(set(answered), timeout_s=60)
            await dlq.wait_for(lambda recs: len(recs) >= len(dead), timeout_s=30)
            # Later events are still answered: the consumer kept going.
            await produce_events(kafka_bootstrap, names.input, [("later", red)])
            await results.wait_for_ids({"later"}, timeout_s=30)
            dlq_records = list(dlq.records)
    finally:
        await service.stop()

    by_id = {r["id"]: r for r in results_of(await read_topic(kafka_bootstrap, names.results))}
    assert set(by_id) == {*answered, "later"}
    for event_id, (_, status, code) in answered.items():
        assert by_id[event_id]["status"] == status, event_id
        assert (by_id[event_id]["error"] or {}).get("code") == code, event_id
    assert by_id["later"]["status"] == "ok"
    assert by_id["good-1"]["predictions"][0]["label_id"] == RED_CLASS

    assert len(await read_topic(kafka_bootstrap, names.dlq)) == len(dead)
    copies = {r.key: r for r in dlq_records}
    assert set(copies) == set(dead)
    for key, value in dead.items():
        headers = dict(copies[key].headers)
        assert headers[DLQ_REASON_HEADER], key
        assert headers["birdwatch-error-code"] == b"invalid_event"
        assert headers["birdwatch-source"].startswith(names.input.encode())
        assert copies[key].value == (value or b"")
    assert service.metrics.dlq_records._value.get() == len(dead)
    assert service.service.delivery.tracker.unfinished() == 0
