"""The cold and limits tables of the report, and the table helpers every table uses."""

from __future__ import annotations

from typing import Any

from bench.common import fmt
from bench.records import Range, cold_ratios, to_json

DASH = "\u2013"


def cell(s: dict[str, Any], digits: int = 2, unit: str = "") -> str:
    return (
        f"{fmt(s['median'], digits)}{unit} ({fmt(s['min'], digits)}{DASH}{fmt(s['max'], digits)})"
    )


def spread_cell(r: Range | None, digits: int = 2, unit: str = "") -> str:
    """A range as `_range` writes it; '-' when not measured."""
    return "-" if r is None else cell(to_json(r), digits, unit)


def markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def cold_tables(cold: dict[str, Any]) -> list[str]:
    rows = [
        [name, cell(v["wall_s"], unit=" s"), str(v["wall_s"]["n"])]
        for name, v in cold["variants"].items()
    ]
    out = markdown_table(["variant", f"wall time, median (min{DASH}max)", "runs"], rows)
    rows = []
    ratios = cold_ratios(cold)
    for backend, r in ratios.items():
        total = r.path_total()
        rows.append(
            [
                f"birdwatch-{backend}",
                spread_cell(r.vs_original, 1, "x"),
                spread_cell(r.vs_same_backend, 1, "x"),
                spread_cell(total, unit=" s"),
                spread_cell(r.vs_critical_path),
            ]
        )
    out += [
        "",
        *markdown_table(
            [
                "ours",
                "speed-up vs original (naive TF)",
                "vs naive, same backend",
                "critical path",
                "wall / critical path",
            ],
            rows,
        ),
    ]
    parts = ("startup_s", "model_path_s", "image_path_s", "inference_s")
    rows = [
        [backend] + [fmt(r.critical_path[k].median, 3) for k in parts]
        for backend, r in ratios.items()
        if r.critical_path
    ]
    if rows:
        out += [
            "",
            *markdown_table(
                [
                    "critical path parts (s, median)",
                    "start-up",
                    "model path",
                    "image path",
                    "inference",
                ],
                rows,
            ),
        ]
    return out


def limits_tables(limits: dict[str, Any]) -> list[str]:
    batches = limits["config"]["batches"]
    rows = []
    for backend, per_threads in limits["inference"].items():
        for threads, per_batch in per_threads.items():
            rows.append(
                [backend, threads]
                + [cell(per_batch[str(b)], 0) if str(b) in per_batch else "-" for b in batches]
            )
    out = markdown_table(
        ["inference", "threads", *(f"batch {b} (images/s)" for b in batches)], rows
    )
    rows = []
    for size, variants in limits["decode"].items():
        for variant in ("draft", "full"):
            rows.append(
                [size, f"{fmt(variants['mean_bytes'] / 1e6, 2)} MB", variant]
                + [cell(v, 0) for v in variants[variant].values()]
            )
    threads = list(next(iter(limits["decode"].values()))["draft"])
    out += [
        "",
        *markdown_table(
            ["decode", "mean size", "variant", *(f"{t} thread(s), images/s" for t in threads)], rows
        ),
    ]
    rows = []
    for backend, load in limits["model_load"].items():
        dl = limits["download"][backend]
        rows.append(
            [
                backend,
                f"{fmt(dl['bytes'] / 2**20, 1)} MiB",
                cell(dl["fetch_s"], unit=" s"),
                f"{fmt(dl['ideal_s'])} s",
                cell(load["import_s"], unit=" s"),
                cell(load["load_s"], unit=" s"),
                cell(load["warmup_s"], 3, " s"),
            ]
        )
    out += [
        "",
        *markdown_table(
            ["model", "size", "fetch (+unpack)", "link ideal", "import", "load", "warm-up"], rows
        ),
    ]
    out += [
        "",
        f"Start-up (interpreter + Birdwatch imports): {cell(limits['startup_s'], unit=' s')}; "
        f"image path (5 large photos fetched concurrently, decoded in 2 threads): "
        f"{cell(limits['image_path_s'], unit=' s')}.",
    ]
    rows = []
    for backend, sizes in limits["ceiling"].items():
        for size, budgets in sizes.items():
            for cores, c in budgets.items():
                rows.append(
                    [
                        backend,
                        size,
                        cores,
                        fmt(c["decode"], 0),
                        fmt(c["inference"], 0),
                        fmt(c["min"], 0),
                        fmt(c["shared"], 0),
                    ]
                )
    out += [
        "",
        *markdown_table(
            [
                "warm ceiling",
                "photos",
                "cores",
                "decode/s",
                "inference/s (best batch)",
                "min (issue)",
                "shared cores",
            ],
            rows,
        ),
    ]
    return out
