"""`birdwatch topics create`, `publish` and `results` against the real broker (CLI in-process)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from consumer import cli
from consumer.testing.models import RED_CLASS
from consumer.testing.topics import Topics, read_topic
from consumer.testing.waiting import wait_until
from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.service_support import ServiceSetup, SettingsFactory, red_image
from tests.kafka_support import InProcessService, serve_model

pytestmark = pytest.mark.kafka


async def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.wait_for(asyncio.to_thread(cli.main, list(args)), timeout=60)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str) -> Topics:
    """Fresh topic and group names, given to the CLI through the environment."""
    chosen = Topics.unique("cli")
    monkeypatch.setenv("BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("BIRDWATCH_LOG_FORMAT", "json")
    for name, value in chosen.env().items():
        monkeypatch.setenv(name, value)
    return chosen


async def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in described}


async def test_topics_create_is_idempotent(
    names: Topics, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await run_cli(capsys, "topics", "create", "--partitions", "3")
    assert code == 0
    assert out.splitlines() == [
        f"{names.input}: created",
        f"{names.results}: created",
        f"{names.dlq}: created",
    ]
    topics = [names.input, names.results, names.dlq]

    async def three_partitions_each() -> bool:
        # Fresh topics reach the metadata a moment after the broker's answer.
        return await partition_counts(kafka_bootstrap, topics) == dict.fromkeys(topics, 3)

    await wait_until(three_partitions_each, 10, "the new topics' metadata")

    code, out, _ = await run_cli(capsys, "topics", "create")
    assert code == 0
    assert out.splitlines() == [
        f"{names.input}: exists",
        f"{names.results}: exists",
        f"{names.dlq}: exists",
    ]
    assert await partition_counts(kafka_bootstrap, topics) == dict.fromkeys(topics, 3)


async def test_publish_then_results_end_to_end(
    names: Topics,
    kafka_bootstrap: str,
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    make_settings: SettingsFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (await run_cli(capsys, "topics", "create", "--partitions", "2"))[0] == 0
    urls = [red_image(http_server, f"/img/red{i}.jpg") for i in range(3)]
    code, out, _ = await run_cli(capsys, "publish", "--json", *urls, "ftp://example.org/x.jpg")
    assert code == 1  # one URL was refused, the others published
    printed = [orjson.loads(line) for line in out.splitlines()]
    assert [p["url"] for p in printed] == urls
    ids = [p["id"] for p in printed]
    assert len(set(ids)) == 3

    # The events landed on the input topic, keyed by their ids.
    events = await read_topic(kafka_bootstrap, names.input)
    assert sorted(r.key.decode() for r in events) == sorted(ids)
    assert {orjson.loads(r.value)["id"]: orjson.loads(r.value)["url"] for r in events} == dict(
        zip(ids, urls, strict=True)
    )

    model = serve_model(http_server, tiny_models)
    setup = ServiceSetup(kafka_bootstrap, names, model, make_settings)
    service = await InProcessService.start(setup.settings())
    try:
        await setup.wait_for_results(ids, timeout_s=60)
    finally:
        await service.stop()

    code, out, _ = await run_cli(
        capsys, "results", "--json", "--from-beginning", "--max", "3", "--timeout", "20"
    )
    assert code == 0
    results = [orjson.loads(line) for line in out.splitlines()]
    assert sorted(r["id"] for r in results) == sorted(ids)
    assert {r["status"] for r in results} == {"ok"}
    assert {r["predictions"][0]["label_id"] for r in results} == {RED_CLASS}

    # Human-readable, and stopping after --timeout seconds without a new result.
    code, out, _ = await run_cli(capsys, "results", "--from-beginning", "--timeout", "2")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(f" ok Species {RED_CLASS} " in line for line in lines)
    assert sorted(line.split()[0] for line in lines) == sorted(ids)


async def test_publish_without_urls_is_a_usage_error(
    names: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run_cli(capsys, "publish")
    assert code == 2
    assert out == ""
    assert "no URLs" in err


async def test_topics_create_reports_what_the_broker_refuses(
    names: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    # One broker cannot hold 3 replicas: every topic is refused, and the command says so.
    code, out, _ = await run_cli(capsys, "topics", "create", "--replication-factor", "3")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(": failed: " in line for line in lines)
    assert "replicat" in lines[0].lower()
