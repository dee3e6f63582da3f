"""What a run's Kafka records say: latency per event, lost and duplicated results, drain time.

Pure functions over the JSON lines of `agent.py collect` (one `in` line per input record, one
`out` line per result record, each with its Kafka timestamp in ms).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Inputs:
    """Input records by event id (the first one when an id was published twice)."""

    at_ms: dict[str, int]
    partition: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    event_id: str
    at_ms: int
    status: str
    url: str = ""
    label: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Collected:
    inputs: Inputs
    results: list[Result]


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON objects among the lines (other output, e.g. a warning, is skipped)."""
    found = []
    for line in lines:
        text = line.strip()
        if text.startswith("{"):
            try:
                found.append(json.loads(text))
            except ValueError:
                continue
    return found


def collected(records: Iterable[dict[str, Any]]) -> Collected:
    at_ms: dict[str, int] = {}
    partition: dict[str, int] = {}
    results = []
    for record in records:
        if record.get("kind") == "in":
            at_ms.setdefault(record["id"], int(record["ts"]))
            partition.setdefault(record["id"], int(record.get("p", -1)))
        elif record.get("kind") == "out":
            results.append(
                Result(
                    record["id"],
                    int(record["ts"]),
                    record["status"],
                    record.get("url") or "",
                    record.get("label"),
                    record.get("error"),
                )
            )
    return Collected(Inputs(at_ms, partition), results)


@dataclass(frozen=True)
class Outcome:
    """Each published event against its results."""

    published: int
    lost: list[str]
    duplicates: int
    unexpected: int
    # Event id -> (input time, first result time), ms: what a subscriber sees first.
    latency: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def delivered(self) -> int:
        return len(self.latency)

    def latencies_ms(self) -> list[int]:
        return [done - sent for sent, done in self.latency.values()]


def outcome(data: Collected) -> Outcome:
    counts = Counter(r.event_id for r in data.results)
    first: dict[str, int] = {}
    for result in sorted(data.results, key=lambda r: r.at_ms):
        first.setdefault(result.event_id, result.at_ms)
    sent = data.inputs.at_ms
    return Outcome(
        published=len(sent),
        lost=sorted(set(sent) - set(first)),
        duplicates=sum(n - 1 for i, n in counts.items() if i in sent),
        unexpected=sum(n for i, n in counts.items() if i not in sent),
        latency={i: (sent[i], first[i]) for i in sent if i in first},
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LatencyStats:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencyStats | None:
        if not values:
            return None
        return cls(len(values), percentile(values, 50), percentile(values, 99), max(values))

    def as_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }


@dataclass(frozen=True)
class Drain:
    """A burst: from its first input record to its last result."""

    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else math.inf


def drain(result: Outcome) -> Drain:
    if not result.latency:
        raise ValueError("no results: nothing drained")
    first = min(sent for sent, _ in result.latency.values())
    last = max(done for _, done in result.latency.values())
    return Drain(result.published, (last - first) / 1000)


@dataclass(frozen=True)
class Mark:
    """Something done to the deployment at a time (ms since the epoch), for windows and plots."""

    name: str
    at_ms: int


def windows(result: Outcome, marks: Sequence[Mark]) -> list[tuple[str, LatencyStats | None]]:
    """Latency of the events published before the first mark ("steady"), then between each
    mark and the next (named after the mark)."""
    edges = [("steady", -math.inf)] + [(m.name, float(m.at_ms)) for m in marks]
    found = []
    for index, (name, start) in enumerate(edges):
        end = edges[index + 1][1] if index + 1 < len(edges) else math.inf
        values = [done - sent for sent, done in result.latency.values() if start <= sent < end]
        found.append((name, LatencyStats.of(values)))
    return found


def published_before(result: Outcome, end_ms: float) -> LatencyStats | None:
    """Latency of the events published before `end_ms` (all of them with math.inf)."""
    return LatencyStats.of([done - sent for sent, done in result.latency.values() if sent < end_ms])


def series(result: Outcome, origin_ms: int) -> list[tuple[float, float]]:
    """(publish time, latency) in seconds since `origin_ms`, in publish order: the plot's input."""
    points = [
        ((sent - origin_ms) / 1000, (done - sent) / 1000) for sent, done in result.latency.values()
    ]
    return sorted(points)


def wrong_species(data: Collected, expected: dict[str, str]) -> list[str]:
    """Event ids whose result is not ok, or names another species than its photo shows
    (`expected`: photo file name -> species label; other photos are not checked)."""
    wrong = []
    for result in data.results:
        name = result.url.rsplit("/", 1)[-1]
        if name in expected and (result.status != "ok" or result.label != expected[name]):
            wrong.append(result.event_id)
    return sorted(set(wrong))
