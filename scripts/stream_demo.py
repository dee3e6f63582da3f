#!/usr/bin/env python3
"""End-to-end stream run on this machine: real broker, N `birdwatch serve` processes, the real
model and photos on a loopback server. Publishes events, optionally SIGKILLs one consumer halfway,
and reports whether every id got an ok result, how many came twice, the throughput and the
end-to-end latency (event sent -> result produced).

    .venv/bin/python scripts/stream_demo.py --consumers 2 --events 200 --kill-one

One run, built from the benchmarks' pieces (bench/kafka.py, bench/netsim.py); `make bench`
measures throughput and latency with repetitions (stream, scaleout), and the reliability tests
check what a SIGKILL does (tests/consumer/test_reliability_sigkill.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a file: make the repository's `bench` importable

from bench.kafka import Publisher, ResultReader, delete_topics  # noqa: E402
from bench.netsim import LinkProfile, NetSim  # noqa: E402
from bench.paths import DATA_DIR, REAL_LABELS, REAL_TFLITE  # noqa: E402
from bench.stats import percentile  # noqa: E402
from consumer.testing.broker import kafka_broker  # noqa: E402
from consumer.testing.serve import ServeProcess  # noqa: E402
from consumer.testing.topics import Topics, create_topics  # noqa: E402
from consumer.testing.waiting import wait_until  # noqa: E402

PHOTOS = (
    "coral_bird.bmp",
    "coral_parrot.jpg",
    "wasmedge_bird.jpg",
    "tflitesupport_sparrow.jpg",
    "coral_owl.jpg",
)
UNLIMITED = LinkProfile(latency_s=0.0, bandwidth_bps=0)


def demo_env(base: str, bootstrap: str, topics: Topics, guarantee: str) -> dict[str, str]:
    return {
        "BIRDWATCH_MODEL_URL": f"{base}/model.tflite",
        "BIRDWATCH_LABELS_URL": f"{base}/labelmap.csv",
        "BIRDWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        "BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        **topics.env(),
        "BIRDWATCH_PROCESSING_GUARANTEE": guarantee,
        "BIRDWATCH_SESSION_TIMEOUT_MS": "6000",
    }


async def stream(
    args: argparse.Namespace, bootstrap: str, topics: Topics, net: NetSim
) -> dict[str, Any]:
    """Start the consumers, publish, kill one halfway if asked, and wait for the results."""
    env = demo_env(net.base, bootstrap, topics, args.guarantee)
    logs = REPO / ".cache"
    serves = [ServeProcess(env, logs / f"demo-consumer-{i}.log") for i in range(args.consumers)]
    isolation = "read_committed" if args.guarantee == "exactly_once" else "read_uncommitted"
    killed = False
    try:
        await asyncio.gather(*(s.wait_ready() for s in serves))
        async with (
            ResultReader(bootstrap, topics.results, isolation) as reader,
            Publisher(bootstrap, topics.input) as pub,
        ):
            urls = [net.url(f"/photos/{name}") for name in PHOTOS]
            if args.rate:
                ids = await pub.steady(urls, args.rate, args.events, "demo")
            else:
                ids = await pub.burst(urls, args.events, "demo")
            deadline = time.monotonic() + args.timeout
            with contextlib.suppress(TimeoutError):
                if args.kill_one:
                    half = len(ids) // 2
                    await wait_until(lambda: len(reader.results) >= half, args.timeout, "half")
                    serves[0].kill()
                    killed = True
                    done = len(reader.results)
                    print(f"killed consumer 0 (SIGKILL) after {done} results", file=sys.stderr)
                await reader.wait_for(ids, max(0.0, deadline - time.monotonic()))
        return summary(args, ids, pub.sent.at, reader, killed)
    finally:
        await asyncio.gather(*(s.stop(timeout_s=60) for s in serves))


def summary(
    args: argparse.Namespace,
    ids: list[str],
    sent: dict[str, float],
    reader: ResultReader,
    killed: bool,
) -> dict[str, Any]:
    ok = [i for i in ids if i in reader.results and reader.results[i].status == "ok"]
    done = {i: reader.results[i].produced_ms / 1000 for i in ok}
    latencies = [done[i] - sent[i] for i in ok]
    start = min(sent.values())
    drain = max(done.values(), default=start) - start

    def ms(q: float) -> float | None:
        return round(percentile(latencies, q), 3) if latencies else None

    return {
        "consumers": args.consumers,
        "events": len(ids),
        "guarantee": args.guarantee,
        "killed_one": killed,
        "ids_with_ok_result": len(ok),
        "duplicates": reader.duplicates,
        "throughput_images_per_s": round(len(ok) / max(1e-9, drain), 1),
        "drain_s": round(drain, 2),
        "e2e_latency_s_p50": ms(0.50),
        "e2e_latency_s_p95": ms(0.95),
        "e2e_latency_s_p99": ms(0.99),
    }


async def main(args: argparse.Namespace) -> int:
    data = Path(args.data_dir)
    mounts = {
        "/model.tflite": data / REAL_TFLITE,
        "/labelmap.csv": data / REAL_LABELS,
        "/photos": data / "photos",
    }
    topics = Topics.unique("demo")
    with kafka_broker(args.bootstrap) as bootstrap:
        await create_topics(bootstrap, topics.names, args.partitions)
        try:
            async with NetSim(mounts, UNLIMITED) as net:
                result = await stream(args, bootstrap, topics, net)
        finally:
            await delete_topics(bootstrap, topics)
    print(json.dumps(result, indent=2))
    return 0 if result["ids_with_ok_result"] == result["events"] else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS", ""),
        help="Kafka bootstrap address (default: BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS, else the "
        "scripts/kafka broker, started for the run when it is not running)",
    )
    parser.add_argument(
        "--data-dir",
        default=str(DATA_DIR),
        help="folder with aiy_birds_v1/ and photos/ (default: ../shared/data, or BENCH_DATA_DIR)",
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
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
