"""`python -m bench [SCENARIO ...]`: run benchmark scenarios (all by default).

Scenarios: limits, cold, stream, scaleout, memory. Results go to bench/out/<scenario>.json and
PNG plots beside them; a summary table and the issue's targets are printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bench.netsim import DEFAULT_BANDWIDTH_BPS, DEFAULT_LATENCY_S, LinkProfile
from bench.paths import OUT_DIR
from bench.runner import SCENARIOS, quick_configs, run_all, summarize, with_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: all")
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"default: {OUT_DIR}")
    parser.add_argument("--bootstrap", default=None, help="Kafka (default: scripts/kafka)")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_S * 1000)
    parser.add_argument("--mbit", type=float, default=DEFAULT_BANDWIDTH_BPS / 1e6)
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="SCENARIO.FIELD=VALUE",
        help="override a setting, e.g. memory.seconds=120 or scaleout.consumers=1,2",
    )
    parser.add_argument(
        "--summary", action="store_true", help="only print the summary of the results in --out"
    )
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - {*SCENARIOS, "all"}
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {[*SCENARIOS, 'all']}")
    names = [n for n in args.scenarios if n != "all"] or list(SCENARIOS)
    if args.summary:
        lines = summarize(args.out, names)
    else:
        profile = LinkProfile(args.latency_ms / 1000, args.mbit * 1e6)
        try:
            configs = with_params(quick_configs() if args.quick else {}, args.param)
        except (ValueError, AttributeError, TypeError) as exc:
            parser.error(str(exc))
        lines = asyncio.run(run_all(names, args.out, profile, args.bootstrap, configs))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
