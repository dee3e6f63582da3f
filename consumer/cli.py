"""The `birdwatch` command: parse arguments, build settings, wire the parts, print."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from consumer.config import Settings, SettingsError, load_settings
from consumer.logs import configure_logging
from consumer.model import ModelError

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
_IMPORTED_AT = time.perf_counter()


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
        description="Identify the birds in images: top-3 species per image with Google's AIY "
        "bird classifier. Settings come from BIRDWATCH_* environment variables and .env "
        "(see env.example).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    classify = sub.add_parser(
        "classify",
        help="classify image URLs and print the top 3 species of each",
        description="Fetch the model and the images online, classify the images in batches and "
        "print the top 3 species per image with a timing summary. With no URL and no --file, "
        "classifies the five sample images of the original service. Exit status: 0 when every "
        "image was classified, 1 when some failed (the others are still printed), 2 on a "
        "configuration or model error.",
    )
    classify.add_argument("urls", nargs="*", metavar="URL", help="image URLs (http or https)")
    classify.add_argument(
        "--file",
        "-f",
        type=Path,
        metavar="FILE",
        help="read more URLs from FILE, one per line ('-' for stdin; blank lines and # comments "
        "are skipped)",
    )
    classify.add_argument(
        "--json",
        action="store_true",
        help="print exactly one PredictionResult JSON object per line, in input order",
    )
    return parser


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
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "classify":
        return _classify(settings, args, started)
    return EXIT_USAGE  # pragma: no cover - argparse rejects unknown commands


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
        return asyncio.run(run_classify(settings, urls, sys.stdout, args.json, started))
    except ModelError as exc:
        structlog.get_logger(__name__).error("model_unavailable", reason=str(exc))
        sys.stderr.write(f"birdwatch: model error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
