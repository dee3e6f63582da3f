"""`python -m e2e compose|k8s|handover`: arguments, the environment, one line on failure."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from e2e import dataserver, report
from e2e.compose import ComposeOptions, run_compose
from e2e.handover import DISRUPTIONS, HandoverOptions, plan_replicas, problems, run_handover
from e2e.k8s import DOCS_IMG, PARTS, K8sOptions, run_k8s
from e2e.overlay import GUARANTEES
from e2e.settings import KAFKA_IMAGE, REPO, Environment
from e2e.shell import E2EError, Unavailable, require_cluster, require_docker, run, say

EXIT_FAILED, EXIT_UNUSABLE = 1, 2


def _choices(allowed: Sequence[str]) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        chosen = tuple(p.strip() for p in text.split(",") if p.strip())
        unknown = [c for c in chosen if c not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)} (comma-separated)")
        return chosen

    return parse


def _guarantees(text: str) -> tuple[str, ...]:
    if text == "both":
        return GUARANTEES
    parsed: tuple[str, ...] = _choices(GUARANTEES)(text.replace("-", "_"))
    return parsed


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m e2e",
        description="Run the deployment for real against the Docker engine and the Kubernetes "
        "cluster the environment points at (docker, docker compose, kubectl). Settings: E2E_* "
        "variables (e2e/settings.py).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    compose = sub.add_parser("compose", help="the compose stack: correctness, 1 vs 2 consumers")
    compose.add_argument("--consumers", type=_positive(int), default=3)
    compose.add_argument("--burst", type=_positive(int), default=300, help="large photos per drain")
    compose.add_argument("--keep", action="store_true", help="leave the stack up")

    k8s = sub.add_parser(
        "k8s", help="the e2e overlay on the cluster: smoke, scale-out, KEDA, chaos"
    )
    k8s.add_argument(
        "--parts", type=_choices(PARTS), default=PARTS, help=f"default: {','.join(PARTS)}"
    )
    k8s.add_argument(
        "--guarantee",
        type=_guarantees,
        default=GUARANTEES,
        help="at_least_once, exactly_once or both (default)",
    )
    k8s.add_argument(
        "--burst", type=_positive(int), default=300, help="large photos per scale-out drain"
    )
    k8s.add_argument("--keda-events", type=_positive(int), default=10000)
    k8s.add_argument("--chaos-rate", type=_positive(float), default=50.0, help="events/s")
    k8s.add_argument("--chaos-seconds", type=_positive(float), default=40.0)
    _cluster_options(k8s)

    handover = sub.add_parser(
        "handover", help="latency through rollouts, scaling, deletions, crashes"
    )
    handover.add_argument(
        "--rate", type=_positive(float), default=20.0, help="events/s (default 20)"
    )
    handover.add_argument(
        "--disruptions",
        type=_choices(DISRUPTIONS),
        default=DISRUPTIONS,
        help=f"in order; default {','.join(DISRUPTIONS)}",
    )
    handover.add_argument(
        "--guarantee",
        type=_guarantees,
        default=GUARANTEES,
        help="at_least_once, exactly_once or both (default)",
    )
    handover.add_argument(
        "--replicas", type=_positive(int), default=2, help="at the start (default 2)"
    )
    handover.add_argument(
        "--steady", type=_positive(float), default=20.0, help="seconds before the first disruption"
    )
    handover.add_argument(
        "--gap", type=_positive(float), default=45.0, help="seconds after each recovery"
    )
    handover.add_argument(
        "--max-wait",
        type=_positive(float),
        default=5.0,
        help="at-least-once: fail if an event published before the first crash waited longer "
        "(seconds, default 5)",
    )
    handover.add_argument(
        "--p99",
        type=_positive(float),
        default=2.0,
        help="at-least-once: fail if the p99 of those events is higher (seconds, default 2)",
    )
    _cluster_options(handover)
    return parser


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plot-dir", type=Path, default=DOCS_IMG, help="where the PNG plots go (default docs/img)"
    )
    parser.add_argument(
        "--no-build", action="store_true", help="deploy the image as already loaded"
    )
    parser.add_argument("--keep", action="store_true", help="leave the namespace up")


def build_and_load(env: Environment, load: bool) -> None:
    started = time.monotonic()
    run(
        ["docker", "build", "-f", "deploy/Dockerfile", "--target", "lite", "-t", env.image, "."],
        cwd=REPO,
        timeout=1800,
    )
    say(f"image {env.image} built in {time.monotonic() - started:.0f} s")
    if not load:
        return
    missing = run(["docker", "image", "inspect", KAFKA_IMAGE], check=False, quiet=True)
    if missing.returncode != 0:
        raise E2EError(f"{KAFKA_IMAGE} is not a local image: docker pull {KAFKA_IMAGE} first")
    started = time.monotonic()
    run([*env.load_image, env.image, KAFKA_IMAGE], timeout=900)
    loader = " ".join(env.load_image)
    say(f"images loaded into the cluster in {time.monotonic() - started:.0f} s ({loader})")


def execute(args: argparse.Namespace, env: Environment) -> int:
    if args.command == "handover":
        plan_replicas(args.disruptions, args.replicas)  # a bad plan fails before any work
    require_docker()
    if args.command != "compose":
        require_cluster()
    site = dataserver.prepare(env)
    with dataserver.serving(env, site):
        if args.command == "compose":
            options = ComposeOptions(consumers=args.consumers, burst=args.burst, keep=args.keep)
            found = run_compose(env, site, options)
            text, failures = report.compose(found), list[str]()
        else:
            if not args.no_build:
                build_and_load(env, load=True)
            if args.command == "k8s":
                k8s_options = K8sOptions(
                    parts=args.parts,
                    guarantees=args.guarantee,
                    burst=args.burst,
                    keda_events=args.keda_events,
                    chaos_rate=args.chaos_rate,
                    chaos_seconds=args.chaos_seconds,
                    plot_dir=args.plot_dir,
                    keep=args.keep,
                )
                found = run_k8s(env, site, k8s_options)
                text, failures = report.k8s(found), list[str]()
            else:
                handover_options = HandoverOptions(
                    rate=args.rate,
                    disruptions=args.disruptions,
                    guarantees=args.guarantee,
                    steady_s=args.steady,
                    gap_s=args.gap,
                    replicas=args.replicas,
                    plot_dir=args.plot_dir,
                    keep=args.keep,
                )
                found = run_handover(env, site, handover_options)
                text = report.handover(found)
                failures = problems(found, args.max_wait, args.p99)
    found["machine"] = report.machine()
    path = env.out_dir / f"{args.command}.json"
    path.write_text(json.dumps(found, indent=2, default=str) + "\n")
    sys.stdout.write(text + f"\n{found['machine']}\nresults: {path}\n")
    if failures:
        raise E2EError("; ".join(failures))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        env = Environment.from_env()
        env.out_dir.mkdir(parents=True, exist_ok=True)
    except ValueError as exc:
        sys.stderr.write(f"e2e: {exc}\n")
        return EXIT_UNUSABLE
    try:
        return execute(args, env)
    except ValueError as exc:
        sys.stderr.write(f"e2e: {exc}\n")
        return EXIT_UNUSABLE
    except Unavailable as exc:
        sys.stderr.write(f"e2e {args.command}: cannot run: {exc}\n")
        return EXIT_UNUSABLE
    except E2EError as exc:
        sys.stderr.write(f"e2e {args.command}: FAILED: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
