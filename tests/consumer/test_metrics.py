"""The metric definitions: outcomes counted by status and error code, label values exported
from the start (so rates and alert expressions have data), the process's own metrics."""

from __future__ import annotations

import time

from consumer.metrics import FALLBACK_FORMS, STAGES, STATUSES, Metrics
from schemas import ErrorCode


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels or None)


def test_outcomes_are_counted_by_status_and_error_code() -> None:
    metrics = Metrics()
    metrics.count_outcome("ok")
    metrics.count_outcome("error", "timeout")
    metrics.count_outcome("error", "timeout")
    metrics.count_outcome("error")  # a code-less error counts as internal
    metrics.count_outcome("dlq")

    assert sample(metrics, "birdwatch_results_produced_total", status="ok") == 1
    assert sample(metrics, "birdwatch_results_produced_total", status="error") == 3
    assert sample(metrics, "birdwatch_result_errors_total", code="timeout") == 2
    assert sample(metrics, "birdwatch_result_errors_total", code="internal") == 1
    assert sample(metrics, "birdwatch_dlq_records_total") == 1
    assert metrics.outcomes_total == 5


def test_known_label_values_are_exported_at_zero_from_the_start() -> None:
    metrics = Metrics()
    for status in STATUSES:
        assert sample(metrics, "birdwatch_results_produced_total", status=status) == 0
    for code in ErrorCode:
        assert sample(metrics, "birdwatch_result_errors_total", code=code.value) == 0
    for stage in STAGES:
        assert sample(metrics, "birdwatch_stage_seconds_count", stage=stage) == 0
    for form in FALLBACK_FORMS:
        assert sample(metrics, "birdwatch_outcome_fallbacks_total", form=form) == 0
    assert sample(metrics, "birdwatch_model_load_failures_total") == 0
    assert sample(metrics, "birdwatch_ready") == 0


def test_the_process_start_time_shows_restarts() -> None:
    started = sample(Metrics(), "process_start_time_seconds")
    assert started is not None
    assert time.time() - 24 * 3600 < started <= time.time()
    assert sample(Metrics(), "process_resident_memory_bytes")
