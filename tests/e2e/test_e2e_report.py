"""e2e.report: the printed figures of each target, from results shaped as the runs make them."""

from __future__ import annotations

from e2e import report

LATENCY = {"count": 10, "p50_ms": 650.0, "p99_ms": 39890.0, "max_ms": 45650.0}
DRAIN = {
    "events": 300,
    "seconds": 30.0,
    "per_second": 10.0,
    "cpu": {
        "seconds": 30.6,
        "consumer_cores": 0.92,
        "machine_cores": 1.64,
        "consumers_cpu_s": 28.2,
    },
    "cpu_ms_per_photo": 94.1,
    "load_average": 3.46,
}


def test_latency_in_seconds() -> None:
    assert report.latency(LATENCY) == "p50 0.65 s, p99 39.89 s, max 45.65 s"
    assert report.latency(None) == "no results"
    assert report.latency_of(None) == "no results"


def test_compose_report() -> None:
    text = report.compose(
        {
            "correctness": {"events": 60, "partitions": {"a": [0, 3], "b": [1, 4], "c": [2, 5]}},
            "drain": {"1": DRAIN, "2": {**DRAIN, "per_second": 18.0}, "ratio": 1.8},
        }
    )
    assert "60 events -> 60 ok results" in text
    assert "ratio 2 vs 1: 1.80x" in text
    assert "consumers used 0.92 cores (94 CPU-ms/photo)" in text
    assert "projection with a whole CPU per consumer: 2.00x" in text


def test_projected_ratio_follows_the_cpu_per_photo() -> None:
    slower = {**DRAIN, "cpu_ms_per_photo": 103.0}
    assert report.projected_ratio({"1": DRAIN, "2": slower}) == 2 * 94.1 / 103.0


def test_k8s_report_names_every_part_it_ran() -> None:
    chaos = {"events": 2000, "lost": 0, "duplicates": 61, "latency": LATENCY}
    keda = {
        "events": 10000,
        "peak_lag": 9993,
        "max_replicas": 3,
        "scaled_up_at_s": 12.7,
        "drained_at_s": 375.4,
        "back_to_min_at_s": 376.1,
        "plot": "docs/img/keda.png",
    }
    text = report.k8s(
        {
            "at_least_once": {
                "smoke": {"events": 40, "latency": LATENCY},
                "scaleout": {"1": DRAIN, "2": DRAIN, "ratio": 1.0},
                "keda": keda,
                "chaos_delete": chaos,
                "chaos_rollout": chaos,
            },
            "exactly_once": {"smoke": {"events": 40, "latency": LATENCY}},
        }
    )
    assert "replicas 1 -> 3 (first step at 13 s) -> 1 at 376 s" in text
    assert "chaos, rollout during a stream: 2000 events, 0 lost, 61 duplicates" in text
    assert text.count("smoke:") == 2


def test_handover_report_has_a_line_per_disruption() -> None:
    run = {
        "rate": 20.0,
        "events": 8000,
        "lost": 0,
        "duplicates": 3,
        "overall": LATENCY,
        "steady": LATENCY,
        "plot": "docs/img/handover-at-least-once.png",
        "disruptions": [
            {"name": "rollout", "at_s": 20.0, "whole_after_s": 126.0, "latency": LATENCY},
            {"name": "delete", "at_s": 200.0, "whole_after_s": 30.0, "latency": None},
        ],
    }
    lines = report.handover({"at_least_once": run}).splitlines()
    assert lines[1].startswith(" at_least_once, 20 events/s: 8000 events, 0 lost, 3 duplicates")
    assert lines[2].startswith("  steady")
    assert "rollout     (at 20 s, whole again after 126 s): p50 0.65 s" in lines[3]
    assert lines[4].endswith("no results")


def test_machine_names_the_cpu() -> None:
    assert report.machine().startswith("machine: ")
