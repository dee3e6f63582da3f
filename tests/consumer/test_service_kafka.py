"""The Kafka service against the real broker: group split, slow images, rebalances, graceful
shutdown and the HTTP endpoints.

Images and the model come from the loopback server; every test has its own topics and group.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter

import aiohttp
import pytest
from structlog.testing import capture_logs

from consumer.kafka.serve import run_serve
from consumer.testing.models import RED_CLASS
from consumer.testing.serve import metric_value
from consumer.testing.topics import TopicReader, committed_offsets, read_topic
from consumer.testing.waiting import free_port, wait_until
from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.service_support import ServiceSetupFactory, new_ids, red_image
from tests.kafka_support import InProcessService

pytestmark = pytest.mark.kafka


async def test_two_consumers_split_six_partitions_and_answer_each_event_once(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    setup = await service_setup("split", partitions=6)
    urls = [red_image(http_server, f"/img/red{i}.jpg") for i in range(5)]
    settings = setup.settings()

    first = await InProcessService.start(settings)
    second = await InProcessService.start(settings)
    try:
        await wait_until(
            lambda: len(first.owned) == 3 and len(second.owned) == 3,
            30,
            "both members to own 3 partitions",
        )
        assert first.owned.isdisjoint(second.owned)
        assert first.state.ready
        assert second.state.ready
        ids = new_ids("split", 500)
        await setup.produce(ids, urls)
        await setup.wait_for_results(ids, timeout_s=90)
        # The split held for the whole run, and both members did part of the work.
        assert len(first.owned) == len(second.owned) == 3
        assert first.count("ok") > 0
        assert second.count("ok") > 0
        assert first.count("ok") + second.count("ok") == 500
        # Read while both run: once the first member leaves, the second is assigned again.
        assert first.sample("birdwatch_rebalances_total") == 2  # alone, then shared
        assert second.sample("birdwatch_rebalances_total") == 1
    finally:
        await first.stop()
        await second.stop()

    results = await setup.results()
    assert len(results) == 500
    assert Counter(r["id"] for r in results) == Counter(ids)
    assert {r["status"] for r in results} == {"ok"}
    assert {r["predictions"][0]["label_id"] for r in results} == {RED_CLASS}
    assert await read_topic(setup.bootstrap, setup.names.dlq) == []


async def test_slow_images_cause_no_rebalance_and_no_duplicate(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    setup = await service_setup("slow", partitions=3)
    url = red_image(http_server, delay_s=2.5)
    # 12 images, 4 at a time, 2.5 s each: intake stays paused longer than the session timeout.
    settings = setup.settings(session_timeout_ms=6000, max_in_flight=4, fetch_timeout_s=30)
    ids = new_ids("slow", 12)
    with capture_logs() as logs:
        service = await InProcessService.start(settings)
        try:
            await wait_until(lambda: len(service.owned) == 3, 30, "the partitions assigned")
            await setup.produce(ids, url)
            await setup.wait_for_results(ids, timeout_s=60)
        finally:
            await service.stop()

    results = await setup.results()
    assert Counter(r["id"] for r in results) == Counter(ids)
    assert all(r["timings_ms"]["fetch"] >= 2400 for r in results)
    assert service.sample("birdwatch_rebalances_total") == 1
    events = [e["event"] for e in logs]
    revoked = [e for e in logs if e["event"] == "partitions_revoked" and e["partitions"]]
    assert revoked == []
    assert "intake_paused" in events
    assert "intake_resumed" in events


async def test_a_revoke_waiting_longer_than_the_session_timeout_keeps_the_member(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    """A member finishing slow in-flight work in its revoke handler is not dropped from the
    group meanwhile (which would hand its partitions out again and, in exactly-once mode, let
    both members commit the same records)."""
    setup = await service_setup("revoke", partitions=6)
    url = red_image(http_server, delay_s=9)
    settings = setup.settings(
        processing_guarantee="exactly_once",
        session_timeout_ms=6000,
        revoke_timeout_s=15,
        fetch_timeout_s=30,
    )
    ids = new_ids("revoke", 12)
    first = await InProcessService.start(settings)
    second: InProcessService | None = None
    try:
        await wait_until(lambda: len(first.owned) == 6, 30, "the first member owning all")
        await setup.produce(ids, url)
        await wait_until(
            lambda: first.sample("birdwatch_records_consumed_total") == 12, 30, "the records taken"
        )
        # The second member joins while all 12 images are still downloading (9 s each).
        second = await InProcessService.start(settings)
        await wait_until(lambda: len(first.owned) == 3 and len(second.owned) == 3, 45, "the split")
        await setup.wait_for_results(ids, timeout_s=30, isolation="read_committed")
        # Read while both run (the second is assigned again once the first leaves).
        assert first.sample("birdwatch_rebalances_total") == 2
        assert second.sample("birdwatch_rebalances_total") == 1
    finally:
        await first.stop()
        if second is not None:
            await second.stop()

    results = await setup.results("read_committed")
    assert Counter(r["id"] for r in results) == Counter(ids)
    # The first member finished its work during the revoke; nobody redid it.
    assert first.count("ok") == 12
    assert second.count("ok") == 0


def slow_model(server: LoopbackServer, models: TinyModels) -> str:
    """The tiny model again, taking 1.5 s to download; returns its URL."""
    return server.add_bytes("/model/slow.tflite", models.tflite.read_bytes(), delay_s=1.5)


async def test_serve_endpoints_graceful_stop_commits_all_and_a_restart_redoes_nothing(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer, tiny_models: TinyModels
) -> None:
    setup = await service_setup("serve", partitions=6)
    # A model that takes a moment to download: the endpoints answer before it is loaded.
    model_url = slow_model(http_server, tiny_models)
    url = red_image(http_server)
    port = free_port()
    # Lag is measured every min(5 s, summary interval): 1 s here.
    settings = setup.settings(model_url=model_url, http_port=port, summary_interval_s=1)
    base = f"http://127.0.0.1:{port}"
    ids = new_ids("serve", 60)
    stop = asyncio.Event()
    serving = asyncio.create_task(run_serve(settings, stop))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:

        async def status(path: str) -> int:
            try:
                async with http.get(base + path) as resp:
                    return resp.status
            except aiohttp.ClientConnectionError:
                return 0

        async def answers_ok(path: str) -> bool:
            return await status(path) == 200

        try:
            await wait_until(lambda: answers_ok("/healthz"), 10, "/healthz")
            assert await status("/readyz") == 503  # the model is still downloading
            ready_s = await wait_until(lambda: answers_ok("/readyz"), 30, "/readyz")
            await setup.produce(ids, url)
            await setup.wait_for_results(ids, timeout_s=60)

            async def caught_up() -> bool:
                nonlocal metrics
                async with http.get(base + "/metrics") as resp:
                    assert resp.status == 200
                    metrics = await resp.text()
                lags = [
                    metric_value(metrics, "birdwatch_consumer_lag", partition=str(p), topic=topic)
                    for p in range(6)
                ]
                lag_lines = metrics.count("birdwatch_consumer_lag{")
                in_flight = metric_value(metrics, "birdwatch_records_in_flight")
                return lag_lines == 6 and lags == [0.0] * 6 and in_flight == 0

            metrics = ""
            topic = setup.names.input
            # Every partition's lag gauge is reported, and reads 0 once all is consumed.
            await wait_until(caught_up, 15, "lag 0 on all six partitions, nothing in flight")
        finally:
            stop.set()
            assert await asyncio.wait_for(serving, 60) == 0

    assert ready_s > 0
    assert metric_value(metrics, "birdwatch_records_consumed_total") == 60
    assert metric_value(metrics, "birdwatch_results_produced_total", status="ok") == 60
    assert metric_value(metrics, "birdwatch_rebalances_total") == 1
    assert metric_value(metrics, "birdwatch_dlq_records_total") == 0
    assert metric_value(metrics, "birdwatch_batch_size_count") >= 1
    assert metric_value(metrics, "birdwatch_batch_size_sum") == 60
    assert metric_value(metrics, "birdwatch_stage_seconds_count", stage="end_to_end") == 60
    assert metric_value(metrics, "birdwatch_stage_seconds_count", stage="fetch") == 60
    assert metric_value(metrics, "birdwatch_model_load_seconds") > 0
    digest = hashlib.sha256(tiny_models.tflite.read_bytes()).hexdigest()
    model = {"url": model_url, "sha256": digest, "backend": "litert"}
    assert metric_value(metrics, "birdwatch_model_info", **model) == 1

    # Everything done is committed: the group's offsets are the ends of the input partitions.
    async with TopicReader(setup.bootstrap, setup.names.input) as inputs:
        ends = await inputs.end_offsets()
    committed = await committed_offsets(setup.bootstrap, setup.names.group)
    assert sum(ends.values()) == 60
    assert {tp: off for tp, off in committed.items() if off >= 0} == {
        tp: end for tp, end in ends.items() if end > 0
    }

    # A new member of the same group is assigned everything and has nothing left to redo.
    restarted = await InProcessService.start(settings)
    try:
        await wait_until(lambda: len(restarted.owned) == 6, 30, "the restarted member assigned")
        await asyncio.sleep(2)
        assert restarted.sample("birdwatch_records_consumed_total") == 0
    finally:
        await restarted.stop()
    results = await setup.results()
    assert Counter(r["id"] for r in results) == Counter(ids)


async def test_stop_before_the_model_is_loaded_exits_cleanly(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer, tiny_models: TinyModels
) -> None:
    setup = await service_setup("early")
    settings = setup.settings(model_url=slow_model(http_server, tiny_models), http_port=free_port())
    stop = asyncio.Event()
    serving = asyncio.create_task(run_serve(settings, stop))
    await wait_until(lambda: http_server.hits.get("/model/slow.tflite", 0) == 1, 10, "model fetch")
    stop.set()
    assert await asyncio.wait_for(serving, 10) == 0
