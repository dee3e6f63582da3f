"""The two pictures of the cluster runs: KEDA's replicas against the lag, and per-event latency
through the handover disruptions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from e2e.records import Mark


def _save(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.tight_layout()
    plt.savefig(path, dpi=110)
    plt.close()
    return path


def plot_keda(
    lag: Sequence[tuple[float, int]],
    desired: Sequence[tuple[float, int]],
    ready: Sequence[tuple[float, int]],
    title: str,
    path: Path,
) -> Path:
    """Lag (left axis) and replicas (right axis, steps) over seconds since the burst."""
    fig, left = plt.subplots(figsize=(9, 4.2))
    left.plot([t for t, _ in lag], [v for _, v in lag], color="tab:blue", label="lag (records)")
    left.set_xlabel("seconds since the burst was published")
    left.set_ylabel("consumer-group lag (records)", color="tab:blue")
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.step(
        [t for t, _ in desired],
        [v for _, v in desired],
        where="post",
        color="tab:orange",
        label="replicas wanted",
    )
    right.step(
        [t for t, _ in ready],
        [v for _, v in ready],
        where="post",
        color="tab:green",
        linestyle="--",
        label="replicas ready",
    )
    right.set_ylabel("replicas")
    top = max([v for _, v in desired] + [v for _, v in ready] + [1])
    right.set_ylim(0, top + 1)
    right.set_yticks(range(top + 2))
    lines = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(lines, labels, loc="upper right")
    fig.suptitle(title, fontsize=10)
    return _save(path)


def plot_handover(
    points: Sequence[tuple[float, float]],
    marks: Sequence[tuple[Mark, float, float]],
    title: str,
    path: Path,
) -> Path:
    """Latency of every event against its publish time (log scale), the disruptions marked.

    `marks`: each disruption with its start and the time the Deployment was whole again, in
    seconds since the stream began (shaded in between)."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.scatter([t for t, _ in points], [max(v, 0.001) for _, v in points], s=4, color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the stream began (publish time)")
    ax.set_ylabel("publish -> result (s, log scale)")
    for mark, start, whole in marks:
        ax.axvspan(start, whole, color="tab:red", alpha=0.08, linewidth=0)
        ax.axvline(start, color="tab:red", linestyle="--", linewidth=1)
        ax.annotate(
            mark.name,
            (start, 0.98),
            xycoords=("data", "axes fraction"),
            xytext=(3, 0),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color="tab:red",
        )
    ax.grid(True, which="major", axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _save(path)
