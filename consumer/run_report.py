"""What `birdwatch classify` prints for a person: each result, then one timing summary, each
figure measuring what its name says."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from consumer.model import LoadedModel
from schemas import Prediction, PredictionResult

# Scores below this print as "<0.1%" rather than as a misleading 0.00%.
SMALLEST_SHOWN = 0.001
# What an image's stages are called in its timings line; the waits add up to "queued".
_WAITS = ("fetch_wait", "decode_wait", "queue")
_STAGES = (("fetch", "fetched"), ("decode", "decoded"), ("inference", "classified"))


@dataclass
class StageTotals:
    """Seconds spent in one stage, over every image that went through it."""

    count: int = 0
    seconds: float = 0.0
    slowest: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        self.slowest = max(self.slowest, seconds)


@dataclass
class RunStats:
    """What the timing summary reports; filled in as the run goes (a `StageObserver`)."""

    started: float
    stages: dict[str, StageTotals] = field(default_factory=dict)
    inference_s: float = 0.0
    batches: int = 0
    statuses: Counter[str] = field(default_factory=Counter)

    def stage(self, name: str, seconds: float) -> None:
        self.stages.setdefault(name, StageTotals()).add(seconds)

    def batch(self, size: int, seconds: float) -> None:
        self.inference_s += seconds
        self.batches += 1

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def format_score(score: float) -> str:
    return "<0.1%" if score < SMALLEST_SHOWN else f"{score:.2%}"


def shown_species(result: PredictionResult) -> list[Prediction]:
    """The species worth showing: those the model gave a score at all (a quantized model
    gives most of them exactly 0, which would only pad the list)."""
    return [p for p in result.predictions if p.score > 0]


def no_bird(result: PredictionResult) -> bool:
    """Whether the "no bird" class outscores every species."""
    best = max((p.score for p in result.predictions), default=0.0)
    return result.background is not None and result.background.score > best


def one_line(result: PredictionResult) -> str:
    """An ok result in a line: "Ara macao 69.92%, ..." or "no bird recognised (99.60%)"."""
    species = ", ".join(f"{p.label} {format_score(p.score)}" for p in shown_species(result))
    if no_bird(result):
        assert result.background is not None
        said = f"no bird recognised ({format_score(result.background.score)})"
        return f"{said}; closest: {species}" if species else said
    return species


def format_result(result: PredictionResult) -> str:
    """An image's lines: its URL, then its species (or "no bird recognised") and timings."""
    lines = [f"[{result.id}] {result.url}"]
    if result.status != "ok":
        assert result.error is not None
        lines.append(f"    error {result.error.code.value}: {result.error.message}")
        return "\n".join(lines) + "\n"
    shown = shown_species(result)
    if no_bird(result):
        assert result.background is not None
        lines.append(f"    no bird recognised ({format_score(result.background.score)} no bird)")
        if shown:
            lines.append("    closest species:")
    for rank, p in enumerate(shown, start=1):
        lines.append(f"    {rank}. {p.label:<40} {format_score(p.score):>7}")
    timings = format_timings(result.timings_ms)
    if timings:
        lines.append(f"    {timings}")
    return "\n".join(lines) + "\n"


def format_timings(timings_ms: dict[str, float]) -> str:
    """ "queued 3 ms, fetched 12 ms, decoded 4 ms, classified 20 ms" from a result's timings."""
    parts = []
    if any(k in timings_ms for k in _WAITS):
        parts.append(f"queued {sum(timings_ms.get(k, 0.0) for k in _WAITS):.0f} ms")
    parts += [f"{word} {timings_ms[k]:.0f} ms" for k, word in _STAGES if k in timings_ms]
    return ", ".join(parts)


def format_summary(model: LoadedModel, stats: RunStats, total: float) -> str:
    """The run's timings, printed once after the results."""
    source = "cache" if model.from_cache else "download"
    mib, backend = model.size_bytes / 2**20, model.classifier.backend
    lines = [
        "",
        "Timings:",
        f"  model fetch      {model.fetch_s:8.3f} s  ({source}, {mib:.1f} MiB)",
        f"  model load       {model.load_s:8.3f} s  ({backend}, warm-up included)",
    ]
    for name, label in (("fetch", "image fetches"), ("decode", "image decodes")):
        totals = stats.stages.get(name)
        if totals is not None and totals.count:
            lines.append(
                f"  {label:<16} {totals.seconds:8.3f} s  (summed over {totals.count} image(s), "
                f"slowest {totals.slowest:.3f} s)"
            )
    lines += [
        f"  inference        {stats.inference_s:8.3f} s  ({stats.batches} batch(es))",
        f"  total            {total:8.3f} s  (wall, since process start)",
        f"  images: {stats.statuses['ok']} ok, {stats.statuses['error']} failed",
    ]
    return "\n".join(lines) + "\n"
