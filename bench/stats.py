"""Small pure helpers for summarising measurements (no I/O, no clocks)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# The service's stages in pipeline order (`birdwatch_stage_seconds`): the waits for a download
# slot and for a decode thread, the work, the decoded image's wait for its batch ("queue") and
# the batch's inference.
STAGES = ("fetch_wait", "fetch", "decode_wait", "decode", "queue", "inference")


@dataclass(frozen=True)
class Spread:
    """The median of some runs and their range."""

    median: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        """The JSON form (`bench.records.Range`)."""
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}


def spread(values: Iterable[float]) -> Spread:
    data = [float(v) for v in values]
    if not data:
        return Spread(math.nan, math.nan, math.nan, 0)
    return Spread(statistics.median(data), min(data), max(data), len(data))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def sustained_rate(times: Sequence[float], skip_fraction: float = 0.1) -> float:
    """Items per second between the first `skip_fraction` of completions and the last one.

    Skipping the first completions leaves out the pipeline's fill-up (the first batch waits for
    downloads), so a burst measures the steady state.
    """
    if len(times) < 2:
        return math.nan
    ordered = sorted(times)
    start = min(int(len(ordered) * skip_fraction), len(ordered) - 2)
    span = ordered[-1] - ordered[start]
    return (len(ordered) - 1 - start) / span if span > 0 else math.nan


def slope_per_s(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y) points; NaN with fewer than two distinct times."""
    if len(points) < 2:
        return math.nan
    mean_t = statistics.fmean(t for t, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return math.nan
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / var


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """Prometheus-style quantile from cumulative (upper bound, count) buckets, +Inf last.

    Interpolates linearly inside the bucket holding the rank; a rank in the +Inf bucket answers
    the highest finite bound. NaN when there are no observations.
    """
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


@dataclass(frozen=True)
class HistogramSnapshot:
    """One labelled histogram series: cumulative buckets, sum and count."""

    buckets: tuple[tuple[float, float], ...]
    total: float
    count: float

    def minus(self, earlier: HistogramSnapshot | None) -> HistogramSnapshot:
        """What was observed since `earlier` (same bucket bounds)."""
        if earlier is None:
            return self
        before = dict(earlier.buckets)
        return HistogramSnapshot(
            tuple((b, c - before.get(b, 0.0)) for b, c in self.buckets),
            self.total - earlier.total,
            self.count - earlier.count,
        )

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def quantile(self, q: float) -> float:
        return histogram_quantile(self.buckets, q)

    def summary(self) -> dict[str, float]:
        return {
            "count": self.count,
            "mean": self.mean,
            "p50": self.quantile(0.5),
            "p95": self.quantile(0.95),
        }


def parse_histograms(text: str, name: str, label: str) -> dict[str, HistogramSnapshot]:
    """Histogram `name` from Prometheus text, one snapshot per value of `label`."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, list[tuple[float, float]]] = {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            key = sample.labels.get(label, "")
            if sample.name == f"{name}_bucket":
                buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
            elif sample.name == f"{name}_sum":
                sums[key] = sample.value
            elif sample.name == f"{name}_count":
                counts[key] = sample.value
    return {
        key: HistogramSnapshot(tuple(sorted(b)), sums.get(key, 0.0), counts.get(key, 0.0))
        for key, b in buckets.items()
    }


def diff_histograms(
    after: Mapping[str, HistogramSnapshot], before: Mapping[str, HistogramSnapshot]
) -> dict[str, HistogramSnapshot]:
    return {key: snap.minus(before.get(key)) for key, snap in after.items()}


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan
