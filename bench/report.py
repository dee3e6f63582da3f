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
from bench.records import Range, RunInfo, cold_ratios, to_json
from bench.scenarios.memory import undecoded
from bench.stats import STAGES
from bench.targets import all_checks

DASH = "\u2013"


def _range(s: dict[str, Any], digits: int = 2, unit: str = "") -> str:
    return (
        f"{fmt(s['median'], digits)}{unit} ({fmt(s['min'], digits)}{DASH}{fmt(s['max'], digits)})"
    )


def _spread(r: Range | None, digits: int = 2, unit: str = "") -> str:
    """A range as `_range` writes it; '-' when not measured."""
    return "-" if r is None else _range(to_json(r), digits, unit)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def cold_tables(cold: dict[str, Any]) -> list[str]:
    rows = [
        [name, _range(v["wall_s"], unit=" s"), str(v["wall_s"]["n"])]
        for name, v in cold["variants"].items()
    ]
    out = _table(["variant", f"wall time, median (min{DASH}max)", "runs"], rows)
    rows = []
    ratios = cold_ratios(cold)
    for backend, r in ratios.items():
        total = r.path_total()
        rows.append(
            [
                f"birdwatch-{backend}",
                _spread(r.vs_original, 1, "x"),
                _spread(r.vs_same_backend, 1, "x"),
                _spread(total, unit=" s"),
                _spread(r.vs_critical_path),
            ]
        )
    out += [
        "",
        *_table(
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
            *_table(
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
                + [_range(per_batch[str(b)], 0) if str(b) in per_batch else "-" for b in batches]
            )
    out = _table(["inference", "threads", *(f"batch {b} (images/s)" for b in batches)], rows)
    rows = []
    for size, variants in limits["decode"].items():
        for variant in ("draft", "full"):
            rows.append(
                [size, f"{fmt(variants['mean_bytes'] / 1e6, 2)} MB", variant]
                + [_range(v, 0) for v in variants[variant].values()]
            )
    threads = list(next(iter(limits["decode"].values()))["draft"])
    out += [
        "",
        *_table(
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
                _range(dl["fetch_s"], unit=" s"),
                f"{fmt(dl['ideal_s'])} s",
                _range(load["import_s"], unit=" s"),
                _range(load["load_s"], unit=" s"),
                _range(load["warmup_s"], 3, " s"),
            ]
        )
    out += [
        "",
        *_table(
            ["model", "size", "fetch (+unpack)", "link ideal", "import", "load", "warm-up"], rows
        ),
    ]
    out += [
        "",
        f"Start-up (interpreter + Birdwatch imports): {_range(limits['startup_s'], unit=' s')}; "
        f"image path (5 large photos fetched concurrently, decoded in 2 threads): "
        f"{_range(limits['image_path_s'], unit=' s')}.",
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
        *_table(
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


def _stream_figures(stream: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(variant, photo size, figures) of a stream result, large photos first."""
    for name, per_size in stream["variants"].items():
        for size in ("large", "small"):
            if size in per_size:
                yield name, size, per_size[size]


def stream_tables(stream: dict[str, Any]) -> list[str]:
    rows = []
    for name, size, data in _stream_figures(stream):
        cap = data["capacity"]
        ceiling = data.get("ceiling", {})
        rows.append(
            [
                name,
                size,
                fmt(cap["sustained_per_s"], 1),
                fmt(ceiling.get("min"), 0),
                fmt(data.get("capacity_vs_ceiling", float("nan")) * 100, 0) + "%",
                fmt(ceiling.get("shared"), 0),
                fmt(data.get("capacity_vs_shared_ceiling", float("nan")) * 100, 0) + "%",
                fmt(cap["consumer_cpu_ms_per_image"], 1),
                f"{fmt(cap['cpu']['ours_busy'] * 100, 0)}% / "
                f"{fmt(cap['cpu']['machine_busy'] * 100, 0)}%",
            ]
        )
    out = _table(
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
        for load, p in data["loads"].items():
            st = p["stages"]
            lat = p["latency_s"]
            rows.append(
                [
                    name,
                    size,
                    f"{load}%",
                    fmt(p["offered_per_s"], 1),
                    fmt(p["achieved_per_s"], 1),
                    fmt(lat["p50"] * 1000, 0),
                    fmt(lat["p95"] * 1000, 0),
                    fmt(lat["p99"] * 1000, 0),
                    fmt(p["p99_bound_s"] * 1000, 0),
                    fmt(p["mean_batch"], 1),
                ]
                + [fmt(st.get(k, {}).get("mean", float("nan")) * 1000, 0) for k in STAGES]
            )
    out += [
        "",
        *_table(
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
                f"{_range(k['capacity_per_s'], 0)} vs {_range(d['capacity_per_s'], 0)}",
                _range(p["capacity_ratio"], 2, "x"),
                fmt(p["offered_per_s"], 0),
                f"{_range(k['p99_ms'], 0)} vs {_range(d['p99_ms'], 0)}",
                _range(p["p99_ratio"], 2, "x"),
                f"{fmt(k['cpu_ms_per_image'], 1)} vs {fmt(d['cpu_ms_per_image'], 1)}"
                if isinstance(k["cpu_ms_per_image"], float)
                else f"{fmt(k['cpu_ms_per_image']['median'], 1)} vs "
                f"{fmt(d['cpu_ms_per_image']['median'], 1)}",
            ]
        )
    return _table(
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
    rows = []
    for n, c in scaleout["counts"].items():
        up = scaleout["speedup"].get(n, {})
        rows.append(
            [
                n,
                _range(c["drain"], unit=" s"),
                _range(c["throughput"], 0, "/s"),
                _range(up, 2, "x") if up else "-",
                fmt(c["cpu_ms_per_image"], 1),
                f"{fmt(c['consumers_busy'] * 100, 0)}% / {fmt(c['machine_busy'] * 100, 0)}%",
                ", ".join(
                    f"cpu{p['cpu'][0]}: {int(p['results'])}" for p in c["per_consumer"] if p["cpu"]
                ),
            ]
        )
    return _table(
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
    for name, m in memory["backends"].items():
        stages = m.get("images_in_stage", {})
        rows.append(
            [
                name,
                fmt(m["model_bytes"] / 2**20, 1),
                fmt(m["idle_rss_mib"], 0),
                fmt(m["peak_rss_mib"], 0),
                f"{fmt(m['settled_min_mib'], 0)}{DASH}{fmt(m['settled_max_mib'], 0)}",
                fmt(m["growth_mib_per_min"], 1),
                fmt(m["classified_per_s"], 1),
                fmt(undecoded(stages), 1),
                fmt(m.get("waiting_bytes_mib"), 0),
            ]
        )
    return _table(
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
    lines += ["### targets", "", *_table(["target", "measured", "wanted", ""], rows)]
    return lines


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    print("\n".join(markdown(folder)))
