"""The Kafka side of the e2e runs: publish events, read back what happened, watch lag.

One self-contained file (aiokafka, the `schemas` package and the standard library: what the
Birdwatch image has), so the very same code runs on the host against the compose broker and in
a pod of the cluster (shipped as a ConfigMap, run with the Birdwatch image). Every command
prints JSON lines on stdout; the harness parses them (e2e.records).

    python agent.py publish --bootstrap B --topic T --prefix P --url U... [--count N] [--rate R]
    python agent.py collect --bootstrap B --input T --results T --prefix P --expect N
    python agent.py lag --bootstrap B --group G --topic T [--every S]
    python agent.py group --bootstrap B --group G
    python agent.py idle
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import GroupCoordinatorNotAvailableError

from schemas import ImageEvent


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def event_id(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}"


async def stdin_closed() -> None:
    """Return when stdin reaches end of file (the harness closes it to stop a command)."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)


async def publish(args: argparse.Namespace) -> int:
    """Publish events round-robin over the URLs: a burst (rate 0) or a steady rate, for
    --count events or until stdin closes (--until-eof)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    stop = asyncio.Event()
    watcher = None
    if args.until_eof:
        watcher = asyncio.create_task(stdin_closed())
        watcher.add_done_callback(lambda _: stop.set())
    acks: list[asyncio.Future[Any]] = []
    started = time.monotonic()
    index = 0
    try:
        while not stop.is_set() and (args.count is None or index < args.count):
            if time.monotonic() - started > args.max_seconds:
                break
            if args.rate > 0:
                delay = started + index / args.rate - time.monotonic()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                        break
                    except TimeoutError:
                        pass
            url = args.url[index % len(args.url)]
            key = event_id(args.prefix, index)
            event = ImageEvent(id=key, url=url, submitted_at=datetime.now(UTC))
            value = event.model_dump_json(exclude_none=True).encode()
            acks.append(await producer.send(args.topic, value, key=key.encode()))
            index += 1
        await asyncio.gather(*acks)
    finally:
        if watcher is not None:
            watcher.cancel()
        await producer.stop()
    emit({"kind": "published", "count": index, "seconds": round(time.monotonic() - started, 3)})
    return 0


def whole_topic(bootstrap: str, isolation: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation,
    )


async def partitions_of(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])


async def assign_all(
    consumer: AIOKafkaConsumer, bootstrap: str, topic: str
) -> list[TopicPartition]:
    assigned = await partitions_of(bootstrap, topic)
    consumer.assign(assigned)
    await consumer.seek_to_beginning(*assigned)
    return assigned


def result_fields(value: bytes) -> dict[str, Any]:
    """What the harness needs of a PredictionResult: id, status, top label or error code."""
    try:
        result = json.loads(value)
    except ValueError:
        return {"id": None, "status": "unreadable"}
    predictions = result.get("predictions") or [{}]
    error = result.get("error") or {}
    return {
        "id": result.get("id"),
        "url": result.get("url"),
        "status": result.get("status"),
        "label": predictions[0].get("label"),
        "error": error.get("code"),
    }


async def read_inputs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every input record of the prefix, up to the end offsets of now."""
    consumer = whole_topic(args.bootstrap, "read_uncommitted")
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        assigned = await assign_all(consumer, args.bootstrap, args.input)
        ends = await consumer.end_offsets(assigned)
        pending = {tp for tp in assigned if ends[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    key = (record.key or b"").decode(errors="replace")
                    if key.startswith(args.prefix + "-"):
                        found.append(
                            {"kind": "in", "id": key, "ts": record.timestamp, "p": tp.partition}
                        )
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return found


async def collect(args: argparse.Namespace) -> int:
    """Print the input records of the prefix, then its results as they come, until results
    for --expect distinct ids arrived, --idle seconds passed without one, or --timeout."""
    for record in await read_inputs(args):
        emit(record)
    consumer = whole_topic(args.bootstrap, args.isolation)
    await consumer.start()
    seen: set[str] = set()
    started = last = time.monotonic()
    try:
        await assign_all(consumer, args.bootstrap, args.results)
        while len(seen) < args.expect:
            now = time.monotonic()
            if now - last > args.idle or now - started > args.timeout:
                break
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    fields = result_fields(record.value or b"")
                    if not str(fields["id"]).startswith(args.prefix + "-"):
                        continue
                    seen.add(fields["id"])
                    last = time.monotonic()
                    emit({"kind": "out", "ts": record.timestamp, "p": tp.partition, **fields})
    finally:
        await consumer.stop()
    emit({"kind": "collected", "distinct": len(seen), "expected": args.expect})
    return 0


async def total_lag(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    group: str,
    partitions: list[TopicPartition],
) -> int:
    ends = await consumer.end_offsets(partitions)
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    lag = 0
    for tp in partitions:
        done = committed[tp].offset if tp in committed else -1
        lag += ends[tp] - max(done, 0)
    return lag


async def lag(args: argparse.Namespace) -> int:
    """Print the group's total lag on the topic every --every seconds until stdin closes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    consumer = whole_topic(args.bootstrap, "read_uncommitted")
    await admin.start()
    await consumer.start()
    stop = asyncio.create_task(stdin_closed())
    try:
        partitions = await partitions_of(args.bootstrap, args.topic)
        while not stop.done():
            value = await total_lag(admin, consumer, args.group, partitions)
            emit({"kind": "lag", "t_ms": int(time.time() * 1000), "lag": value})
            await asyncio.wait({stop}, timeout=args.every)
    finally:
        stop.cancel()
        await consumer.stop()
        await admin.close()
    return 0


def members_of(description: Any) -> list[dict[str, Any]]:
    """Members of a DescribeGroups response (v0-v3 layout) with their partitions."""
    found = []
    for group in description.groups:
        for member_id, client_id, client_host, _meta, assignment in group[5]:
            partitions = (
                sorted(
                    p.partition
                    for p in ConsumerProtocolMemberAssignment.decode(assignment).partitions()
                )
                if assignment
                else []
            )
            found.append(
                {
                    "member": member_id,
                    "client": client_id,
                    "host": client_host,
                    "partitions": partitions,
                }
            )
    return found


async def group(args: argparse.Namespace) -> int:
    """Print the group's state and its members with the partitions assigned to each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    try:
        (description,) = await admin.describe_consumer_groups([args.group])
    except GroupCoordinatorNotAvailableError:  # no group offsets topic yet: ask again later
        emit({"kind": "group", "state": "Unknown", "members": []})
        return 0
    finally:
        await admin.close()
    state = description.groups[0][2] if description.groups else "Unknown"
    emit({"kind": "group", "state": state, "members": members_of(description)})
    return 0


async def idle(_: argparse.Namespace) -> int:
    """Wait for SIGTERM: the process of a pod the harness runs commands in."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="publish ImageEvents")
    pub.add_argument("--bootstrap", required=True)
    pub.add_argument("--topic", required=True)
    pub.add_argument("--prefix", required=True, help="event ids are PREFIX-000000, ...")
    pub.add_argument("--url", action="append", required=True, help="cycled over the events")
    pub.add_argument("--count", type=int, default=None, help="default: until stopped")
    pub.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = as fast as possible")
    pub.add_argument("--until-eof", action="store_true", help="stop when stdin closes")
    pub.add_argument("--max-seconds", type=float, default=3600.0)
    col = sub.add_parser("collect", help="print the inputs and results of a prefix")
    col.add_argument("--bootstrap", required=True)
    col.add_argument("--input", required=True)
    col.add_argument("--results", required=True)
    col.add_argument("--prefix", required=True)
    col.add_argument("--expect", type=int, required=True, help="distinct results to wait for")
    col.add_argument("--isolation", default="read_uncommitted")
    col.add_argument("--idle", type=float, default=60.0, help="stop after S s without a result")
    col.add_argument("--timeout", type=float, default=600.0)
    lag_p = sub.add_parser("lag", help="print the group's lag until stdin closes")
    lag_p.add_argument("--bootstrap", required=True)
    lag_p.add_argument("--group", required=True)
    lag_p.add_argument("--topic", required=True)
    lag_p.add_argument("--every", type=float, default=2.0)
    grp = sub.add_parser("group", help="print the group's members and their partitions")
    grp.add_argument("--bootstrap", required=True)
    grp.add_argument("--group", required=True)
    sub.add_parser("idle", help="wait for SIGTERM")
    return parser


COMMANDS = {"publish": publish, "collect": collect, "lag": lag, "group": group, "idle": idle}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return asyncio.run(COMMANDS[args.command](args))


if __name__ == "__main__":
    raise SystemExit(main())
