#!/usr/bin/env python3
"""End-to-end stream run on this machine: real broker, N `birdwatch serve` processes, loopback
images. Publishes events, optionally SIGKILLs one consumer halfway, and reports whether every
id got an ok result, the throughput and the end-to-end latency (submitted_at -> processed_at).

    .venv/bin/python scripts/stream_demo.py --consumers 2 --events 200 --kill-one
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiohttp import ClientSession, web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
PHOTOS = (
    "coral_bird.bmp",
    "coral_parrot.jpg",
    "wasmedge_bird.jpg",
    "tflitesupport_sparrow.jpg",
    "coral_owl.jpg",
)


async def serve_files(root: Path) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_static("/", root)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def wait_ready(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"consumer on port {port} not ready after {timeout} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main(args: argparse.Namespace) -> int:
    data = Path(args.data_dir).resolve()
    files, base = await serve_files(data)
    run = uuid.uuid4().hex[:8]
    topics = {"in": f"demo-in-{run}", "out": f"demo-out-{run}", "dlq": f"demo-dlq-{run}"}
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, args.partitions, 1) for t in topics.values()])
    await admin.close()

    env = {
        **os.environ,
        "BIRDWATCH_MODEL_URL": f"{base}/aiy_birds_v1/birds_V1_3.tflite",
        "BIRDWATCH_LABELS_URL": f"{base}/aiy_birds_v1/labelmap.csv",
        "BIRDWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        "BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
        "BIRDWATCH_GROUP_ID": f"demo-{run}",
        "BIRDWATCH_INPUT_TOPIC": topics["in"],
        "BIRDWATCH_RESULTS_TOPIC": topics["out"],
        "BIRDWATCH_DLQ_TOPIC": topics["dlq"],
        "BIRDWATCH_PROCESSING_GUARANTEE": args.guarantee,
        "BIRDWATCH_SESSION_TIMEOUT_MS": "6000",
        "BIRDWATCH_LOG_FORMAT": "json",
    }
    procs = []
    for i in range(args.consumers):
        port = 18080 + i
        log = (REPO / ".cache" / f"demo-consumer-{i}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [str(REPO / ".venv/bin/birdwatch"), "serve"],
                env={**env, "BIRDWATCH_HTTP_PORT": str(port)},
                stdout=log,
                stderr=log,
            )
        )
    await asyncio.gather(*(wait_ready(18080 + i, 120) for i in range(args.consumers)))

    ids = [uuid.uuid4().hex for _ in range(args.events)]
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    start = time.time()
    sent_at: dict[str, float] = {}
    for i, event_id in enumerate(ids):
        sent_at[event_id] = time.time()
        url = f"{base}/photos/{PHOTOS[i % len(PHOTOS)]}"
        event = {"id": event_id, "url": url, "submitted_at": datetime.now(UTC).isoformat()}
        await producer.send(topics["in"], orjson.dumps(event), key=event_id.encode())
        if args.rate:
            await asyncio.sleep(1 / args.rate)
    await producer.flush()
    await producer.stop()

    reader = AIOKafkaConsumer(
        topics["out"],
        bootstrap_servers=args.bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed"
        if args.guarantee == "exactly_once"
        else "read_uncommitted",
    )
    await reader.start()
    results: dict[str, list[dict[str, object]]] = {}
    killed = False
    deadline = time.monotonic() + args.timeout
    while len([i for i in ids if i in results]) < len(ids) and time.monotonic() < deadline:
        batch = await reader.getmany(timeout_ms=200)
        for records in batch.values():
            for record in records:
                result = orjson.loads(record.value)
                results.setdefault(result["id"], []).append(result)
        if args.kill_one and not killed and len(results) >= len(ids) // 2:
            procs[0].send_signal(signal.SIGKILL)
            killed = True
            print(f"killed consumer 0 (SIGKILL) after {len(results)} results", file=sys.stderr)
    await reader.stop()
    end = max(
        (datetime.fromisoformat(str(r[0]["processed_at"])).timestamp() for r in results.values()),
        default=time.time(),
    )

    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)
    await files.cleanup()

    ok = [i for i in ids if any(r["status"] == "ok" for r in results.get(i, []))]
    # End to end: from the moment the event was sent to the result's processed_at.
    e2e = [
        datetime.fromisoformat(str(results[i][0]["processed_at"])).timestamp() - sent_at[i]
        for i in ok
    ]
    summary = {
        "consumers": args.consumers,
        "events": args.events,
        "guarantee": args.guarantee,
        "killed_one": killed,
        "ids_with_ok_result": len(ok),
        "duplicates": sum(len(r) - 1 for r in results.values()),
        "throughput_images_per_s": round(len(ok) / max(1e-9, end - start), 1),
        "drain_s": round(end - start, 2),
        "e2e_latency_s_p50": round(statistics.median(e2e), 3) if e2e else None,
        "e2e_latency_s_p95": round(percentile(e2e, 0.95), 3) if e2e else None,
        "e2e_latency_s_p99": round(percentile(e2e, 0.99), 3) if e2e else None,
    }
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0 if len(ok) == len(ids) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument(
        "--data-dir",
        default=str(REPO.parent / "shared" / "data"),
        help="folder with aiy_birds_v1/ and photos/ (default: ../shared/data)",
    )
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s (0 = a burst)")
    parser.add_argument("--kill-one", action="store_true", help="SIGKILL one consumer halfway")
    parser.add_argument(
        "--guarantee", choices=["at_least_once", "exactly_once"], default="at_least_once"
    )
    parser.add_argument("--timeout", type=float, default=180.0)
    raise SystemExit(asyncio.run(main(parser.parse_args())))
