"""Records whose outcome Kafka cannot take as it is, through the real broker, in both modes.

An input record of about 1 MB without a usable id is accepted by the broker, but its DLQ copy
(with our headers) is over the producer's 1 MiB limit; a 100 KB one is under it but over a DLQ
topic's `max.message.bytes` of 32 KiB. Neither may stall its partition or the member: the copy
is truncated to fit, the other records' results keep flowing, the committed offset passes it,
and a stop is prompt. Figures go to .cache/reliability/ (docs/RELIABILITY.md, hostile inputs).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from structlog.testing import capture_logs

from consumer.kafka.delivery import DeliveryFailedError
from consumer.kafka.outcomes import DLQ_FORM_HEADER, DLQ_ORIGINAL_SIZE_HEADER, DLQ_SOURCE_HEADER
from consumer.testing.topics import (
    committed_offsets,
    create_topics,
    event_value,
    produce,
    read_topic,
)
from consumer.testing.waiting import wait_until
from tests.conftest import LoopbackServer
from tests.consumer.service_support import ServiceSetup, ServiceSetupFactory, new_ids, red_image
from tests.kafka_support import InProcessService, ServeProcess
from tests.reliability_support import record_figures

pytestmark = pytest.mark.kafka

MIB = 1_048_576
SMALL_DLQ_LIMIT = 32_768
SHUTDOWN_TIMEOUT_S = 30.0
GUARANTEES = ["at_least_once", "exactly_once"]


def no_id_record(size: int) -> bytes:
    """A JSON event of `size` bytes without an id: the broker takes it, it can only be a DLQ
    record."""
    head = b'{"url": "https://birds.example/x.jpg", "pad": "'
    return head + b"p" * (size - len(head) - 2) + b'"}'


async def create_dlq(setup: ServiceSetup, partitions: int, max_message_bytes: int | None) -> None:
    configs = {} if max_message_bytes is None else {"max.message.bytes": str(max_message_bytes)}
    admin = AIOKafkaAdminClient(bootstrap_servers=setup.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(setup.names.dlq, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()
    await create_topics(setup.bootstrap, [setup.names.dlq], partitions)  # waits for the leaders


async def produce_around(
    setup: ServiceSetup, url: str, bad: bytes, before: list[str], after: list[str]
) -> None:
    """Good events on both partitions, then `bad` on partition 0, then more good events."""
    records = [(i.encode(), event_value(i, url)) for i in before]
    await produce(setup.bootstrap, setup.names.input, records, partitions=[0, 1])
    await produce(setup.bootstrap, setup.names.input, [(None, bad)], partitions=[0])
    records = [(i.encode(), event_value(i, url)) for i in after]
    await produce(setup.bootstrap, setup.names.input, records, partitions=[0, 1])


async def committed_past_everything(setup: ServiceSetup, ends: dict[int, int]) -> bool:
    offsets = await committed_offsets(setup.bootstrap, setup.names.group)
    got = {tp.partition: o for tp, o in offsets.items() if tp.topic == setup.names.input}
    return got == ends


def age_gauge(member: InProcessService, partition: int) -> float | None:
    labels = {"topic": member.settings.input_topic, "partition": str(partition)}
    return member.metrics.registry.get_sample_value("birdwatch_oldest_uncommitted_seconds", labels)


@pytest.mark.parametrize(
    ("guarantee", "size", "dlq_limit"),
    [
        ("at_least_once", MIB - 200, None),
        ("exactly_once", MIB - 200, None),
        ("at_least_once", 100_000, SMALL_DLQ_LIMIT),
        ("exactly_once", 100_000, SMALL_DLQ_LIMIT),
    ],
    ids=["1MB-alo", "1MB-eos", "100KB-small-dlq-alo", "100KB-small-dlq-eos"],
)
async def test_an_oversized_dlq_copy_is_truncated_and_nothing_stalls(
    guarantee: str,
    size: int,
    dlq_limit: int | None,
    service_setup: ServiceSetupFactory,
    http_server: LoopbackServer,
) -> None:
    eos = guarantee == "exactly_once"
    setup = await service_setup(f"big-{guarantee[:3]}")
    await create_topics(setup.bootstrap, [setup.names.input, setup.names.results], 2)
    await create_dlq(setup, 2, dlq_limit)
    url = red_image(http_server)
    before, after = new_ids("before", 10), new_ids("after", 10)
    bad = no_id_record(size)
    settings = setup.settings(
        processing_guarantee=guarantee,
        shutdown_timeout_s=SHUTDOWN_TIMEOUT_S,
        summary_interval_s=1,
    )
    isolation = "read_committed" if eos else "read_uncommitted"
    with capture_logs() as logs:
        member = await InProcessService.start(settings)
        try:
            await wait_until(lambda: len(member.owned) == 2, 30, "both partitions assigned")
            started = time.monotonic()
            await produce_around(setup, url, bad, before, after)
            await setup.wait_for_results([*before, *after], 60, isolation)
            answered_s = time.monotonic() - started
            # 5 + 1 + 5 records on partition 0, 5 + 5 on partition 1: all committed.
            ends = {0: 11, 1: 10}
            await wait_until(lambda: committed_past_everything(setup, ends), 30, "offsets")
            committed_s = time.monotonic() - started
            # The gauge of the oldest uncommitted record reads 0 again on both partitions.
            await wait_until(lambda: age_gauge(member, 0) == age_gauge(member, 1) == 0, 15, "ages")
        finally:
            stop_s = await member.stop()

    dlq = await read_topic(setup.bootstrap, setup.names.dlq, isolation)
    assert len(dlq) == 1
    [copy] = dlq
    headers = dict(copy.headers)
    assert headers[DLQ_FORM_HEADER] == b"truncated"
    assert headers[DLQ_ORIGINAL_SIZE_HEADER] == str(len(bad)).encode()
    assert headers[DLQ_SOURCE_HEADER] == f"{setup.names.input}/0/5".encode()
    assert copy.value is not None
    assert bad.startswith(copy.value)
    assert len(copy.value) > min(MIB, dlq_limit or MIB) - 1000  # as much as fits

    per_id = Counter(r["id"] for r in await setup.results(isolation))
    assert per_id == Counter([*before, *after])  # every other record answered, once
    events = Counter(str(e["event"]) for e in logs)
    assert events["outcome_replaced"] == 1  # logged once...
    [replaced] = [e for e in logs if e["event"] == "outcome_replaced"]
    assert (replaced["topic"], replaced["partition"], replaced["offset"]) == (
        setup.names.input,
        0,
        5,
    )  # ... with where it came from
    assert events["produce_retry"] == events["transaction_failed"] == 0  # never resent
    assert events["delivery_failed"] == 0
    [done] = [e for e in logs if e["event"] == "shutdown_done"]
    assert done["unfinished"] == 0
    assert stop_s < SHUTDOWN_TIMEOUT_S  # the stop did not wait for a record that never ends
    record_figures(
        f"oversized_dlq_copy_{'1mb' if dlq_limit is None else '100kb_small_dlq'}_{guarantee}",
        {
            "guarantee": guarantee,
            "input_record_bytes": len(bad),
            "dlq_topic_max_message_bytes": dlq_limit,
            "dlq_copy_value_bytes": len(copy.value),
            "other_records": len(before) + len(after),
            "all_answered_s": round(answered_s, 2),
            "offsets_committed_past_it_s": round(committed_s, 2),
            "graceful_stop_s": round(stop_s, 2),
        },
    )


async def test_a_limit_learned_too_late_fails_the_member_and_its_replacement_goes_on(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    """Exactly-once, with a DLQ topic created after the member read the limits: the broker
    refuses the copy inside a transaction. The member must abort (aiokafka would commit the
    rest of the transaction, offsets included, losing the copy) and stop, since aiokafka cannot
    write to that partition again; the member that takes over reads the limit and goes on."""
    setup = await service_setup("late-limit")
    await create_topics(setup.bootstrap, [setup.names.input, setup.names.results], 2)
    url = red_image(http_server)
    before, after = new_ids("before", 10), new_ids("after", 10)
    bad = no_id_record(100_000)
    settings = setup.settings(processing_guarantee="exactly_once", summary_interval_s=1)
    with capture_logs() as logs:
        first = await InProcessService.start(settings)
        try:
            await wait_until(lambda: len(first.owned) == 2, 30, "both partitions assigned")
            await create_dlq(setup, 1, SMALL_DLQ_LIMIT)
            produced_at = time.monotonic()
            await produce_around(setup, url, bad, before, after)
            assert first.task is not None
            await asyncio.wait_for(asyncio.shield(first.task), 60)
        except DeliveryFailedError as exc:
            failure = str(exc)
        else:
            pytest.fail("the member went on with a producer that cannot write")
        finally:
            await first.runtime.__aexit__(None, None, None)
        failed_s = time.monotonic() - produced_at
        assert first.state.failed  # /healthz answers 503
        second = await InProcessService.start(settings)
        try:
            await setup.wait_for_results([*before, *after], 60, "read_committed")
            ends = {0: 11, 1: 10}
            await wait_until(lambda: committed_past_everything(setup, ends), 30, "offsets")
            recovered_s = time.monotonic() - produced_at
        finally:
            await second.stop()

    assert f"{setup.names.input}/0/5" in failure
    assert "MessageSizeTooLargeError" in failure
    visible = await setup.results("read_committed")
    assert Counter(r["id"] for r in visible) == Counter([*before, *after])
    [copy] = await read_topic(setup.bootstrap, setup.names.dlq, "read_committed")
    assert dict(copy.headers)[DLQ_FORM_HEADER] == b"truncated"
    failed = [e for e in logs if e["event"] == "delivery_failed"]
    assert len(failed) == 1
    [refused] = [e for e in logs if e["event"] == "outcome_refused"]
    assert (refused["topic"], refused["partition"], refused["offset"]) == (setup.names.input, 0, 5)
    assert refused["destination"] == setup.names.dlq
    assert any(e["event"] == "topic_limits" for e in logs)
    record_figures(
        "oversized_dlq_copy_limit_learned_late_exactly_once",
        {
            "input_record_bytes": len(bad),
            "dlq_topic_max_message_bytes": SMALL_DLQ_LIMIT,
            "first_member_failed_after_s": round(failed_s, 2),
            "replacement_answered_and_committed_after_s": round(recovered_s, 2),
            "visible_results": len(visible),
            "failure": failure,
        },
    )


async def test_a_record_that_does_not_finish_shows_in_the_age_gauge_not_in_lag(
    service_setup: ServiceSetupFactory, http_server: LoopbackServer
) -> None:
    """A stuck partition is visible in /metrics: the age of its oldest uncommitted record grows
    while its lag (records not yet read) reads 0."""
    setup = await service_setup("age", partitions=2)
    slow = red_image(http_server, "/img/slow.jpg", delay_s=8.0)
    fast = red_image(http_server, "/img/fast.jpg")
    settings = setup.settings(summary_interval_s=1, fetch_timeout_s=30)
    member = await InProcessService.start(settings)
    try:
        await wait_until(lambda: len(member.owned) == 2, 30, "both partitions assigned")
        await setup.produce_events([("slow", slow)], partitions=[1])
        await setup.produce(new_ids("fast", 5), fast, partitions=[0])

        def lag(partition: int) -> float | None:
            labels = {"topic": settings.input_topic, "partition": str(partition)}
            return member.metrics.registry.get_sample_value("birdwatch_consumer_lag", labels)

        async def stuck_shows() -> bool:
            return (age_gauge(member, 1) or 0) >= 4 and lag(1) == 0 and age_gauge(member, 0) == 0

        await wait_until(stuck_shows, 15, "partition 1's age growing while its lag is 0")
        age_seen = age_gauge(member, 1)
        await setup.wait_for_results(["slow"], 30)
        await wait_until(lambda: age_gauge(member, 1) == 0, 10, "partition 1's age back to 0")
    finally:
        await member.stop()
    record_figures(
        "oldest_uncommitted_gauge_slow_record",
        {"image_delay_s": 8.0, "age_seen_s": round(age_seen or 0, 1), "lag_meanwhile": 0},
    )


@pytest.mark.parametrize("guarantee", GUARANTEES)
async def test_sigterm_after_an_oversized_record_is_prompt(
    guarantee: str, service_setup: ServiceSetupFactory, http_server: LoopbackServer, tmp_path: Path
) -> None:
    """`birdwatch serve` itself, stopped by SIGTERM once the ~1 MB record went by: exit 0 well
    within the shutdown timeout, nothing left unfinished."""
    setup = await service_setup(f"term-{guarantee[:3]}", partitions=2)
    url = red_image(http_server)
    before, after = new_ids("before", 5), new_ids("after", 5)
    env = setup.serve_env(
        processing_guarantee=guarantee, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S, summary_interval_s=1
    )
    member = ServeProcess(env, tmp_path / "serve.log")
    try:
        await member.wait_ready()
        await produce_around(setup, url, no_id_record(MIB - 200), before, after)
        isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
        await setup.wait_for_results([*before, *after], 60, isolation)
        sent_at = time.monotonic()
        assert await member.terminate(timeout_s=SHUTDOWN_TIMEOUT_S + 30) == 0
        exit_s = time.monotonic() - sent_at
    finally:
        member.close()
    [done] = member.log_events("shutdown_done")
    assert done["unfinished"] == 0
    assert exit_s < SHUTDOWN_TIMEOUT_S
    [replaced] = member.log_events("outcome_replaced")
    assert replaced["replaced_by"] == "truncated"
    record_figures(
        f"oversized_dlq_copy_sigterm_{guarantee}", {"sigterm_to_exit_s": round(exit_s, 2)}
    )
