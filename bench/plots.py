"""PNG plots of the scenario results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.records import (
    MemoryResult,
    ScaleoutResult,
    SizeFigures,
    cold_ratios,
    limits_critical_paths,
    scaled,
    stream_variants,
)
from bench.stats import STAGES

_COLORS = {
    "naive-tensorflow": "#b0b0b0",
    "naive-litert": "#d8d8d8",
    "birdwatch-tensorflow": "#e07b39",
    "birdwatch-litert": "#3a7ec2",
    "tensorflow": "#e07b39",
    "litert": "#3a7ec2",
    "tensorflow-onednn-off": "#3c9a5f",
    "litert-1cpu": "#7b4fa8",
}


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_cold(result: dict[str, Any], path: Path, limits: dict[str, Any] | None = None) -> Path:
    names = list(result["variants"])
    med = [result["variants"][n]["wall_s"]["median"] for n in names]
    low = [m - result["variants"][n]["wall_s"]["min"] for n, m in zip(names, med, strict=True)]
    high = [result["variants"][n]["wall_s"]["max"] - m for n, m in zip(names, med, strict=True)]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.barh(
        names,
        med,
        xerr=[low, high],
        color=[_COLORS.get(n, "grey") for n in names],
        capsize=4,
    )
    for i, m in enumerate(med):
        ax.text(m, i, f"  {m:.2f} s", va="center")
    totals: dict[str, float] = {}
    limits_paths = limits_critical_paths(limits)
    for backend, entry in cold_ratios(result).items():
        paired = entry.path_total()
        if paired is not None and paired.median is not None:  # measured in the same rounds
            totals[backend] = paired.median
        elif backend in limits_paths:
            totals[backend] = limits_paths[backend].total_s
    for backend, total in totals.items():
        name = f"birdwatch-{backend}"
        if name in names:
            i = names.index(name)
            ax.plot([total] * 2, [i - 0.4, i + 0.4], color="black", linestyle="--")
    if totals:
        ax.plot([], [], color="black", linestyle="--", label="critical path (median)")
        ax.legend(loc="lower right")
    ax.set_xlabel("seconds, process start to last result (median, min-max)")
    ax.set_title(f"Cold run, {len(result['images'])} large photos, empty model cache")
    ax.invert_yaxis()
    ax.set_xlim(0, max(med) * 1.35)
    return _save(fig, path)


def plot_limits(result: dict[str, Any], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for backend, per_threads in result["inference"].items():
        for threads, per_batch in per_threads.items():
            sizes = [int(b) for b in per_batch]
            rates = [v["median"] for v in per_batch.values()]
            style = "-" if threads == "1" else "--"
            left.plot(
                sizes,
                rates,
                style,
                marker="o",
                color=_COLORS.get(backend),
                label=f"{backend}, {threads} thread(s)",
            )
    left.set_xscale("log", base=2)
    batch_sizes = sorted(
        {
            int(b)
            for per_threads in result["inference"].values()
            for p in per_threads.values()
            for b in p
        }
    )
    left.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    left.set_xlabel("batch size")
    left.set_ylabel("images/s")
    left.set_title("Inference throughput")
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)

    labels, values, colors = [], [], []
    for size, variants in result["decode"].items():
        for variant in ("draft", "full"):
            for threads, v in variants[variant].items():
                labels.append(f"{size} {variant} t{threads}")
                values.append(v["median"])
                colors.append("#3a7ec2" if variant == "draft" else "#b0b0b0")
    right.barh(labels, values, color=colors)
    right.set_xscale("log")
    right.set_xlabel("images/s (log)")
    right.set_title("Decode to 224x224 (draft = reduced DCT scale)")
    right.invert_yaxis()
    return _save(fig, path)


def _latency_panel(ax: Axes, data: SizeFigures, title: str) -> None:
    loads = [int(k) for k in data.loads]
    phases = [data.loads[str(k)] for k in loads]
    for q, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
        ax.plot(
            loads,
            [scaled(getattr(p.latency_s, q)) for p in phases],
            style,
            marker="o",
            label=q,
            color="#3a7ec2",
        )
    bound = [scaled(p.p99_bound_s) for p in phases]
    ax.plot(loads, bound, color="black", linestyle="-.", marker="x", linewidth=1, label="p99 bound")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("load, % of capacity")
    ax.set_ylabel("end-to-end ms")
    ax.set_ylim(bottom=0)
    ax.set_xticks(loads)


def plot_stream(result: dict[str, Any], path: Path) -> Path:
    base = {n: v for n, v in stream_variants(result).items() if not v.env}
    panels = [(b, s, f) for b, v in base.items() for s, f in v.sizes()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4), squeeze=False)
    for ax, (backend, size, data) in zip(axes[0], panels, strict=True):
        cap = scaled(data.capacity.sustained_per_s, 1)
        _latency_panel(ax, data, f"{backend}, {size}: capacity {cap:.0f}/s")
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def plot_stages(result: dict[str, Any], path: Path, load: str = "50") -> Path:
    """Mean seconds per image in each stage at one load, per backend and size."""
    colors = ("#deebf7", "#9ecae1", "#c6dbef", "#3a7ec2", "#fdae6b", "#e07b39")
    rows, values = [], []
    for backend, variant in stream_variants(result).items():
        for size, figures in variant.sizes():
            if load in figures.loads:
                phase = figures.loads[load]
                rows.append(f"{backend}\n{size}")
                values.append([(phase.stage_mean(s) or 0.0) * 1000 for s in STAGES])
    fig, ax = plt.subplots(figsize=(7.5, 0.7 * max(1, len(rows)) + 1.4))
    lefts = [0.0] * len(rows)
    for i, (stage, color) in enumerate(zip(STAGES, colors, strict=True)):
        widths = [v[i] for v in values]
        ax.barh(rows, widths, left=lefts, color=color, label=stage)
        lefts = [a + b for a, b in zip(lefts, widths, strict=True)]
    ax.set_xlabel(
        f"mean ms per image at {load}% load (queue: decoded, waiting for the inference thread; "
        "inference: its batch)",
        fontsize=8,
    )
    ax.set_title("Where the time goes (service stage histograms)")
    ax.legend(fontsize=8, ncols=6, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    ax.invert_yaxis()
    return _save(fig, path)


def plot_scaleout(result: dict[str, Any], path: Path) -> Path:
    record = ScaleoutResult.of(result)
    counts = [int(n) for n in record.counts]
    figures = [record.counts[str(n)] for n in counts]
    rates = [scaled(c.throughput_per_s, 1) for c in figures]
    low = [r - scaled(c.throughput.min, 1) for r, c in zip(rates, figures, strict=True)]
    high = [scaled(c.throughput.max, 1) - r for r, c in zip(rates, figures, strict=True)]
    one = rates[0] if counts and counts[0] == 1 else None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.bar([str(n) for n in counts], rates, yerr=[low, high], capsize=4, color="#3a7ec2")
    if one:
        cpus = record.cpus or 2
        ideal = [one * min(n, cpus) for n in counts]
        ax.plot([str(n) for n in counts], ideal, "k--", marker="_", label="linear up to the cores")
        ax.legend(fontsize=8)
    for i, r in enumerate(rates):
        ax.text(i, r, f"{r:.0f}/s", ha="center", va="bottom")
    ax.set_xlabel("consumers, one pinned CPU each (2 cores here)")
    ax.set_ylabel("images/s to drain the burst")
    ax.set_title(f"Scale-out: {record.events} events, 6 partitions")
    return _save(fig, path)


def plot_memory(result: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    right = ax.twinx()
    for backend, data in MemoryResult.of(result).variants.items():
        t = [s[0] for s in data.samples]
        rss = [s[1] for s in data.samples]
        ax.plot(t, rss, color=_COLORS.get(backend), label=f"{backend} RSS")
        start, end = data.load_s
        ax.axvspan(start, end, color=_COLORS.get(backend), alpha=0.06)
        if data.in_flight:
            right.plot(
                [p[0] for p in data.in_flight],
                [scaled(p[1], 1) for p in data.in_flight],
                color=_COLORS.get(backend),
                linestyle=":",
                linewidth=1,
                label=f"{backend} records in flight",
            )
    ax.set_xlabel("seconds since the process started (shaded: under load)")
    ax.set_ylabel("RSS, MiB")
    right.set_ylabel("records in flight (dotted)")
    ax.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    ax.set_title("Resident memory of one saturated consumer (large photos)")
    ax.legend(fontsize=8, loc="center right")
    return _save(fig, path)


def plot_knobs(result: dict[str, Any], path: Path) -> Path:
    """Capacity and p99 of each knob next to the default (medians, min-max)."""
    names = list(result["pairs"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.9 * max(1, len(names)) + 1.6))
    for ax, key, label in (
        (left, "capacity_per_s", "capacity, images/s"),
        (right, "p99_ms", "p99 at the same offered rate, ms"),
    ):
        for i, name in enumerate(names):
            pair = result["pairs"][name]
            for offset, side, color in (
                (-0.18, "default", "#b0b0b0"),
                (0.18, "knob_result", "#3c9a5f"),
            ):
                s = pair[side][key]
                ax.barh(
                    i + offset,
                    s["median"],
                    height=0.34,
                    xerr=[[s["median"] - s["min"]], [s["max"] - s["median"]]],
                    color=color,
                    capsize=3,
                    label=("default" if side == "default" else "knob") if i == 0 else None,
                )
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
    left.legend(fontsize=8)
    fig.suptitle("Knobs vs defaults, interleaved A B A B (small photos)")
    return _save(fig, path)
