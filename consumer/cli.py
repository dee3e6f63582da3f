"""The `birdwatch` command: parse arguments, build settings, wire the parts, print."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import textwrap
import time
from collections.abc import Coroutine, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import structlog
from aiokafka.errors import KafkaError

from consumer import tracing
from consumer.config import Settings, SettingsError, load_settings, unknown_variables
from consumer.images.memory import return_large_frees_to_the_system
from consumer.kafka.produce_errors import DeliveryFailedError, describe
from consumer.kafka.reach import CONNECT_TIMEOUT_S, EXIT_KAFKA_UNAVAILABLE, KafkaUnreachableError
from consumer.logs import configure_logging
from consumer.model import ModelError

# Exit statuses of every command (documented in --help and the README).
EXIT_OK = 0
# classify/publish: some images or URLs failed (the others were done); topics create: a topic
# was refused; serve: Kafka refused the member's writes (e.g. it was fenced).
EXIT_SOME_FAILED = 1
# A configuration, usage or model error: nothing was done.
EXIT_USAGE = 2
# publish, results, topics create: the brokers (BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS) cannot be
# reached, or refused the command.
EXIT_INTERRUPTED = 130
EXIT_STATUSES = f"""exit status:
  {EXIT_OK}    done: every image classified, every event published, a graceful stop
  {EXIT_SOME_FAILED}    some inputs failed: images not classified (classify), URLs not valid
       (publish), topics refused (topics create); serve: Kafka refused the member's writes
  {EXIT_USAGE}    configuration, usage or model error: nothing was done (one line on stderr)
  {EXIT_KAFKA_UNAVAILABLE}    Kafka unreachable (publish, results, topics create: one line on
       stderr, within {CONNECT_TIMEOUT_S:g} s) or the command was refused
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""
_IMPORTED_AT = time.perf_counter()


def version() -> str:
    try:
        return metadata.version("birdwatch")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def process_started_at() -> float:
    """`time.perf_counter()` at process start (Linux), else when this module was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
        if 0 <= age < 3600:
            return time.perf_counter() - age
    except (OSError, ValueError, IndexError):
        pass
    return _IMPORTED_AT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="birdwatch",
        description=textwrap.fill(
            "Identify the birds in images: top-3 species per image with Google's AIY bird "
            "classifier. Settings come from BIRDWATCH_* environment variables and .env (see "
            "env.example); an unknown BIRDWATCH_* variable is warned about."
        ),
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    classify = sub.add_parser(
        "classify",
        help="classify image URLs and print the top 3 species of each",
        description="Fetch the model and the images online, classify the images in batches and "
        "print the top 3 species per image with a timing summary. With no URL and no --file, "
        "classifies the five sample images of the original service. A model that cannot be "
        "reached is retried for BIRDWATCH_CLASSIFY_MODEL_RETRY_S (30 s); a model cache that "
        "cannot be written is replaced by a temporary folder, with a warning. Exit status: 0 "
        "when every image was classified, 1 when some failed (the others are still printed), 2 "
        "on a configuration or model error.",
    )
    _add_url_inputs(classify)
    classify.add_argument(
        "--json",
        action="store_true",
        help="print exactly one PredictionResult JSON object per line, in input order",
    )
    sub.add_parser(
        "serve",
        help="run the Kafka consumer-group service",
        description="Load and warm the model, then join consumer group BIRDWATCH_GROUP_ID on "
        "BIRDWATCH_INPUT_TOPIC and publish one PredictionResult per record to "
        "BIRDWATCH_RESULTS_TOPIC (unparseable records go to BIRDWATCH_DLQ_TOPIC). Serves "
        "/healthz, /readyz and /metrics on BIRDWATCH_HTTP_PORT. Stops gracefully on SIGTERM or "
        "SIGINT. Exit status: 0 after a graceful stop, 1 when Kafka refused the member's writes "
        "(e.g. it was fenced), 2 on a configuration or model error. While Kafka cannot be "
        "reached it keeps retrying.",
    )

    topics = sub.add_parser(
        "topics",
        help="manage the Kafka topics",
        description="Exit status: 0 when every topic exists, 1 when one could not be created, "
        "3 when Kafka cannot be reached.",
    )
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_sub.add_parser(
        "create",
        help="create the input, results and DLQ topics if missing (idempotent)",
        description="Create BIRDWATCH_INPUT_TOPIC, BIRDWATCH_RESULTS_TOPIC and BIRDWATCH_DLQ_TOPIC "
        f"if missing. Exit status 1 when the broker refuses some topic, {EXIT_KAFKA_UNAVAILABLE} "
        "when Kafka cannot be reached.",
    )
    create.add_argument("--partitions", type=_positive, default=6, help="default: 6")
    create.add_argument("--replication-factor", type=_positive, default=1, help="default: 1")

    publish = sub.add_parser(
        "publish",
        help="publish ImageEvents for image URLs to the input topic",
        description="Produce one ImageEvent per URL, with a generated id. Exit status 1 when "
        "some URL is not a valid http(s) URL (the others are published), "
        f"{EXIT_KAFKA_UNAVAILABLE} when Kafka cannot be reached.",
    )
    _add_url_inputs(publish)
    publish.add_argument(
        "--json", action="store_true", help='print {"id", "url"} per published event as JSON lines'
    )

    results = sub.add_parser(
        "results",
        help="print results from the results topic as they arrive",
        description="Follow the results topic (read_committed in exactly_once mode) and print "
        "each result; stops after --max results or --timeout seconds without a new one. Exit "
        f"status {EXIT_KAFKA_UNAVAILABLE} when Kafka cannot be reached.",
    )
    results.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest result instead of new ones only",
    )
    results.add_argument(
        "--max", type=_positive, default=None, metavar="N", help="stop after N results"
    )
    results.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds without a new result",
    )
    results.add_argument(
        "--json", action="store_true", help="print one PredictionResult JSON object per line"
    )
    return parser


def _add_url_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("urls", nargs="*", metavar="URL", help="image URLs (http or https)")
    parser.add_argument(
        "--file",
        "-f",
        type=Path,
        metavar="FILE",
        help="read more URLs from FILE, one per line ('-' for stdin; blank lines and # comments "
        "are skipped)",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def read_urls(urls: Sequence[str], file: Path | None) -> list[str]:
    found = list(urls)
    if file is not None:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        for raw in text.splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    started = process_started_at()
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.stderr.write(f"birdwatch: configuration error: {exc}\n")
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)  # also stamina's retry hooks
    return_large_frees_to_the_system()  # decoded images' memory goes back when freed
    _warn_unknown_variables()
    if args.command == "classify":
        return _classify(settings, args, started)
    return _kafka_command(settings, args)


def _warn_unknown_variables() -> None:
    log = structlog.get_logger(__name__)
    for name, closest in unknown_variables(os.environ):
        log.warning("unknown_setting", variable=name, did_you_mean=closest)


def _kafka_command(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.kafka import publish, results, topics
    from consumer.kafka.serve import run_serve

    if args.command in ("serve", "publish"):
        # The standard OTEL_* variables switch tracing on when the `tracing` extra is installed.
        tracing.configure_from_environment(os.environ)
    work: Coroutine[Any, Any, int]
    try:
        if args.command == "serve":
            work = run_serve(settings)
        elif args.command == "topics":
            work = topics.create_topics(
                settings, args.partitions, args.replication_factor, sys.stdout
            )
        elif args.command == "publish":
            urls = read_urls(args.urls, args.file)
            if not urls:
                sys.stderr.write("birdwatch: no URLs to publish\n")
                return EXIT_USAGE
            work = publish.publish(settings, urls, args.json, sys.stdout)
        else:
            work = results.follow_results(
                settings, args.from_beginning, args.max, args.timeout, args.json, sys.stdout
            )
        return _run(work)
    except OSError as exc:
        sys.stderr.write(f"birdwatch: {exc}\n")
        return EXIT_USAGE
    except KafkaUnreachableError as exc:
        sys.stderr.write(f"birdwatch: {exc}\n")
        return EXIT_KAFKA_UNAVAILABLE
    except DeliveryFailedError as exc:  # serve: the member could write nothing more
        sys.stderr.write(f"birdwatch: kafka error: {describe(exc)}\n")
        return EXIT_SOME_FAILED
    except KafkaError as exc:
        sys.stderr.write(f"birdwatch: kafka error: {describe(exc)}\n")
        return EXIT_KAFKA_UNAVAILABLE


def _classify(settings: Settings, args: argparse.Namespace, started: float) -> int:
    from consumer.classify import SAMPLE_IMAGE_URLS, run_classify

    try:
        urls = read_urls(args.urls, args.file)
    except OSError as exc:
        sys.stderr.write(f"birdwatch: cannot read --file: {exc}\n")
        return EXIT_USAGE
    if not urls and args.file is None:
        urls = list(SAMPLE_IMAGE_URLS)
    if not urls:
        sys.stderr.write("birdwatch: no URLs to classify\n")
        return EXIT_USAGE
    try:
        return _run(run_classify(settings, urls, sys.stdout, args.json, started))
    except OSError as exc:  # e.g. no temporary folder either: one line, never a traceback
        structlog.get_logger(__name__).error("classify_failed", error=str(exc))
        sys.stderr.write(f"birdwatch: {exc}\n")
        return EXIT_USAGE


def _run(command: Coroutine[Any, Any, int]) -> int:
    """Run one command; a model that cannot be had is one line on stderr and exit status 2."""
    try:
        return asyncio.run(command)
    except ModelError as exc:
        structlog.get_logger(__name__).error("model_unavailable", reason=str(exc))
        sys.stderr.write(f"birdwatch: model error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
