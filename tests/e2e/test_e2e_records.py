"""e2e.records: latency per event, lost and duplicated results, drains, windows."""

from __future__ import annotations

import math

import pytest

from e2e import records


def lines(*found: dict[str, object]) -> list[dict[str, object]]:
    return list(found)


def sample() -> records.Collected:
    return records.collected(
        [
            {"kind": "in", "id": "r-000000", "ts": 1000, "p": 0},
            {"kind": "in", "id": "r-000001", "ts": 1100, "p": 3},
            {"kind": "in", "id": "r-000002", "ts": 1200, "p": 5},
            {
                "kind": "out",
                "id": "r-000001",
                "ts": 1500,
                "status": "ok",
                "url": "http://h/photos/coral_parrot.jpg",
                "label": "Ara macao",
            },
            {
                "kind": "out",
                "id": "r-000000",
                "ts": 1300,
                "status": "ok",
                "url": "http://h/photos/wasmedge_bird.jpg",
                "label": "Ara macao",
            },
            {
                "kind": "out",
                "id": "r-000001",
                "ts": 1400,
                "status": "ok",
                "url": "http://h/photos/coral_parrot.jpg",
                "label": "Ara macao",
            },
            {"kind": "out", "id": "other-1", "ts": 1400, "status": "error", "error": "timeout"},
            {"kind": "collected", "distinct": 2, "expected": 3},
        ]
    )


def test_outcome_counts_lost_duplicates_and_strangers() -> None:
    found = records.outcome(sample())
    assert found.published == 3
    assert found.lost == ["r-000002"]
    assert found.duplicates == 1
    assert found.unexpected == 1
    assert found.delivered == 2


def test_latency_is_from_input_to_the_first_result() -> None:
    found = records.outcome(sample())
    assert found.latency == {"r-000000": (1000, 1300), "r-000001": (1100, 1400)}
    assert sorted(found.latencies_ms()) == [300, 300]


def test_input_partitions_are_kept() -> None:
    assert sample().inputs.partition == {"r-000000": 0, "r-000001": 3, "r-000002": 5}


def test_parse_lines_skips_what_is_not_json() -> None:
    text = ['{"kind": "in", "id": "a", "ts": 1}', "WARNING: something", "{broken", "", '{"x": 1}']
    assert records.parse_lines(text) == [{"kind": "in", "id": "a", "ts": 1}, {"x": 1}]


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 100, 100),
    ],
)
def test_percentile_is_nearest_rank(values, q, expected) -> None:
    assert records.percentile(values, q) == expected


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        records.percentile([], 50)
    assert records.LatencyStats.of([]) is None


def test_latency_stats() -> None:
    stats = records.LatencyStats.of([10.0, 20.0, 30.0, 1000.0])
    assert stats is not None
    assert stats.as_dict() == {"count": 4, "p50_ms": 20.0, "p99_ms": 1000.0, "max_ms": 1000.0}


def test_drain_runs_from_the_first_input_to_the_last_result() -> None:
    found = records.drain(records.outcome(sample()))
    assert found.events == 3
    assert found.seconds == pytest.approx(0.4)
    assert found.per_second == pytest.approx(7.5)
    with pytest.raises(ValueError, match="nothing drained"):
        records.drain(records.outcome(records.collected([])))


def test_windows_split_events_by_publish_time_at_the_marks() -> None:
    data = records.collected(
        [{"kind": "in", "id": f"w-{i}", "ts": 1000 * i} for i in range(6)]
        + [
            {
                "kind": "out",
                "id": f"w-{i}",
                "ts": 1000 * i + (5000 if i in (2, 3) else 10),
                "status": "ok",
            }
            for i in range(6)
        ]
    )
    found = dict(
        records.windows(
            records.outcome(data),
            [
                records.Mark("rollout", 2000),
                records.Mark("crash", 4000),
                records.Mark("idle", 9000),
            ],
        )
    )
    assert list(found) == ["steady", "rollout", "crash", "idle"]
    steady, rollout, crash = found["steady"], found["rollout"], found["crash"]
    assert steady is not None
    assert steady.max_ms == 10
    assert rollout is not None
    assert (rollout.count, rollout.p50_ms) == (2, 5000)
    assert crash is not None
    assert crash.count == 2
    assert found["idle"] is None


def test_published_before_keeps_the_events_published_before_the_end() -> None:
    data = records.collected(
        [{"kind": "in", "id": f"b-{i}", "ts": 1000 * i} for i in range(4)]
        + [
            {"kind": "out", "id": f"b-{i}", "ts": 1000 * i + 10 * (i + 1), "status": "ok"}
            for i in range(4)
        ]
    )
    result = records.outcome(data)
    before = records.published_before(result, 2000)
    assert before is not None
    assert (before.count, before.max_ms) == (2, 20)
    everything = records.published_before(result, math.inf)
    assert everything is not None
    assert (everything.count, everything.max_ms) == (4, 40)
    assert records.published_before(result, 0) is None


def test_series_is_in_seconds_since_the_origin() -> None:
    assert records.series(records.outcome(sample()), 1000) == [(0.0, 0.3), (0.1, 0.3)]


def test_wrong_species_checks_only_the_known_photos() -> None:
    expected = {"coral_parrot.jpg": "Ara macao", "wasmedge_bird.jpg": "Aix galericulata"}
    assert records.wrong_species(sample(), expected) == ["r-000000"]
    assert records.wrong_species(sample(), {}) == []
