"""`python -m monitoring` writes the generated monitoring files; `--check` only compares them
and exits 1 naming those that are out of date."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitoring import dashboard, manifests
from monitoring.paths import DASHBOARD_CONFIGMAP, DASHBOARD_JSON, PROMETHEUS_RULE, REPO


def generated() -> dict[Path, str]:
    """Every generated file and the text it must hold."""
    board = dashboard.render()
    return {
        DASHBOARD_JSON: board,
        DASHBOARD_CONFIGMAP: manifests.dashboard_configmap(board),
        PROMETHEUS_RULE: manifests.prometheus_rule(),
    }


def stale() -> list[Path]:
    """The generated files whose committed text differs from what the sources give."""
    return [
        path for path, text in generated().items() if not path.exists() or path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"out of date: {path.relative_to(REPO)} (run python -m monitoring)")
        return 1 if out_of_date else 0
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
