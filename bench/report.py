"""Markdown tables of the results in an output folder, for docs/PERFORMANCE.md.

python -m bench.report [OUT_DIR]
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import fmt, load_json
from bench.paths import OUT_DIR
from bench.records import (
    MemoryResult,
    RunInfo,
    ScaleoutResult,
    SizeFigures,
    scaled,
    stream_variants,
)
from bench.report_cold import (
    DASH,
    cell,
    cold_tables,
    limits_tables,
    markdown_table,
    spread_cell,
)
from bench.stats import STAGES
from bench.targets import all_checks


def _stream_figures(stream: dict[str, Any]) -> Iterator[tuple[str, str, SizeFigures]]:
    """(variant, photo size, figures) of a stream result, large photos first."""
    for name, variant in stream_variants(stream).items():
        for size, figures in variant.sizes():
            yield name, size, figures


def stream_tables(stream: dict[str, Any]) -> list[str]:
    rows = []
    for name, size, data in _stream_figures(stream):
        cap = data.capacity
        ceiling = data.ceiling
        rows.append(
            [
                name,
                size,
                fmt(cap.sustained_per_s, 1),
                fmt(ceiling.min if ceiling else None, 0),
                fmt(scaled(data.capacity_vs_ceiling, 100), 0) + "%",
                fmt(ceiling.shared if ceiling else None, 0),
                fmt(scaled(data.capacity_vs_shared_ceiling, 100), 0) + "%",
                fmt(cap.consumer_cpu_ms_per_image, 1),
                f"{fmt(scaled(cap.cpu.get('ours_busy'), 100), 0)}% / "
                f"{fmt(scaled(cap.cpu.get('machine_busy'), 100), 0)}%",
            ]
        )
    out = markdown_table(
        [
            "variant",
            "photos",
            "capacity/s",
            "ceiling (min)",
            "ratio",
            "ceiling (shared)",
            "ratio",
            "consumer CPU-ms/image",
            "CPU busy: ours / machine",
        ],
        rows,
    )
    rows = []
    for name, size, data in _stream_figures(stream):
        for load, p in data.loads.items():
            lat = p.latency_s
            rows.append(
                [
                    name,
                    size,
                    f"{load}%",
                    fmt(p.offered_per_s, 1),
                    fmt(p.achieved_per_s, 1),
                    fmt(scaled(lat.p50), 0),
                    fmt(scaled(lat.p95), 0),
                    fmt(scaled(lat.p99), 0),
                    fmt(scaled(p.p99_bound_s), 0),
                    fmt(p.mean_batch, 1),
                ]
                + [fmt(scaled(p.stage_mean(k)), 0) for k in STAGES]
            )
    out += [
        "",
        *markdown_table(
            [
                "variant",
                "photos",
                "load",
                "offered/s",
                "achieved/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "p99 bound ms",
                "mean batch",
                *(f"{k} ms" for k in STAGES[:-1]),
                "inference ms/batch",
            ],
            rows,
        ),
    ]
    return out


def knobs_tables(knobs: dict[str, Any]) -> list[str]:
    rows = []
    for name, p in knobs["pairs"].items():
        d, k = p["default"], p["knob_result"]
        rows.append(
            [
                name,
                f"{cell(k['capacity_per_s'], 0)} vs {cell(d['capacity_per_s'], 0)}",
                cell(p["capacity_ratio"], 2, "x"),
                fmt(p["offered_per_s"], 0),
                f"{cell(k['p99_ms'], 0)} vs {cell(d['p99_ms'], 0)}",
                cell(p["p99_ratio"], 2, "x"),
                f"{fmt(k['cpu_ms_per_image'], 1)} vs {fmt(d['cpu_ms_per_image'], 1)}"
                if isinstance(k["cpu_ms_per_image"], float)
                else f"{fmt(k['cpu_ms_per_image']['median'], 1)} vs "
                f"{fmt(d['cpu_ms_per_image']['median'], 1)}",
            ]
        )
    return markdown_table(
        [
            "knob (vs default)",
            "capacity/s, knob vs default",
            "ratio",
            "offered/s",
            "p99 ms, knob vs default",
            "ratio",
            "CPU-ms/image",
        ],
        rows,
    )


def scaleout_tables(scaleout: dict[str, Any]) -> list[str]:
    record = ScaleoutResult.of(scaleout)
    rows = []
    for n, c in record.counts.items():
        busy = (scaled(c.consumers_busy, 100), scaled(c.machine_busy, 100))
        rows.append(
            [
                n,
                spread_cell(c.drain, unit=" s"),
                spread_cell(c.throughput, 0, "/s"),
                spread_cell(record.speedup.get(n), 2, "x"),
                fmt(c.cpu_ms_per_image, 1),
                f"{fmt(busy[0], 0)}% / {fmt(busy[1], 0)}%",
                ", ".join(f"cpu{p.cpu[0]}: {int(p.results)}" for p in c.per_consumer if p.cpu),
            ]
        )
    return markdown_table(
        [
            "consumers",
            "drain 600",
            "throughput",
            "vs one",
            "CPU-ms/image",
            "busy: consumers / machine",
            "results per consumer (last round)",
        ],
        rows,
    )


def memory_tables(memory: dict[str, Any]) -> list[str]:
    rows = []
    for name, m in MemoryResult.of(memory).variants.items():
        rows.append(
            [
                name,
                fmt(m.model_bytes / 2**20, 1),
                fmt(m.idle_rss_mib, 0),
                fmt(m.peak_rss_mib, 0),
                f"{fmt(m.settled_min_mib, 0)}{DASH}{fmt(m.settled_max_mib, 0)}",
                fmt(m.growth_mib_per_min, 1),
                fmt(m.classified_per_s, 1),
                fmt(m.undecoded, 1),
                fmt(m.waiting_bytes_mib, 0),
            ]
        )
    return markdown_table(
        [
            "variant",
            "model MiB",
            "idle RSS",
            "peak RSS",
            "RSS after warm-up",
            "trend MiB/min",
            "images/s",
            "photos fetched, not yet decoded (mean)",
            "their MiB",
        ],
        rows,
    )


def markdown(out_dir: Path) -> list[str]:
    lines: list[str] = []
    results: dict[str, dict[str, Any]] = {}
    for name, render in (
        ("limits", limits_tables),
        ("cold", cold_tables),
        ("stream", stream_tables),
        ("knobs", knobs_tables),
        ("scaleout", scaleout_tables),
        ("memory", memory_tables),
    ):
        data = load_json(out_dir, name)
        if data is None:
            continue
        results[name] = data
        info = RunInfo.of(data)
        before, after = info.load_average_before, info.machine.load_average
        lines += [f"### {name}", "", *render(data), ""]
        lines += [
            f"_{fmt(info.duration_s, 0)} s; load average before {before}, after {after}._",
            "",
        ]
    checks = all_checks(results)
    rows = [
        [c.target, c.measured, c.wanted, {True: "met", False: "**missed**", None: "n/a"}[c.met]]
        for c in checks
    ]
    lines += ["### targets", "", *markdown_table(["target", "measured", "wanted", ""], rows)]
    return lines


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    print("\n".join(markdown(folder)))
