"""Prometheus metric definitions, in a registry owned by the service (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from schemas import ErrorCode

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# Every label value known in advance is exported from the start (at 0), so a rate or a ratio
# over it has data before the first such event and alert expressions never see "no series".
STAGES = ("fetch_wait", "fetch", "decode_wait", "decode", "queue", "inference", "end_to_end")
STATUSES = ("ok", "error")
FALLBACK_FORMS = ("truncated", "internal", "reference")


class Metrics:
    """Everything `/metrics` exposes; also a `StageObserver` for the pipeline."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.outcomes_total = 0
        r = self.registry
        # process_start_time_seconds (restarts), CPU and memory of this process (Linux only).
        ProcessCollector(registry=r)
        self.records_consumed = Counter(
            "birdwatch_records_consumed", "Input records read from Kafka", registry=r
        )
        self.results_produced = Counter(
            "birdwatch_results_produced", "Results acknowledged by Kafka", ["status"], registry=r
        )
        self.dlq_records = Counter(
            "birdwatch_dlq_records",
            "Unparseable records copied to the dead-letter topic",
            registry=r,
        )
        self.result_errors = Counter(
            "birdwatch_result_errors",
            "Error results acknowledged by Kafka, by error code",
            ["code"],
            registry=r,
        )
        self.batch_size = Histogram(
            "birdwatch_batch_size",
            "Images per inference call",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "birdwatch_stage_seconds",
            "Seconds spent per image in each stage (fetch_wait for a download slot, fetch, "
            "decode_wait for a decode thread, decode, queue for a batch, inference; end_to_end "
            "from the record timestamp)",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "birdwatch_records_in_flight",
            "Records received whose outcome is not yet durable",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "birdwatch_consumer_lag",
            "Records behind the end of each assigned partition",
            ["topic", "partition"],
            registry=r,
        )
        self.oldest_uncommitted = Gauge(
            "birdwatch_oldest_uncommitted_seconds",
            "Age of the oldest record of each assigned partition whose offset is not committed "
            "yet (0 when there is none): grows without end on a stuck partition",
            ["topic", "partition"],
            registry=r,
        )
        self.outcome_fallbacks = Counter(
            "birdwatch_outcome_fallbacks",
            "Outcomes Kafka could not take as they were, by the stand-in written instead "
            "(truncated DLQ copy, internal error result, DLQ reference)",
            ["form"],
            registry=r,
        )
        self.model_load_seconds = Gauge(
            "birdwatch_model_load_seconds", "Seconds to fetch and load the model", registry=r
        )
        self.model = Info(
            "birdwatch_model",
            "The model served: its setting (url), the sha256 of its download, its backend",
            registry=r,
        )
        self.model_load_failures = Counter(
            "birdwatch_model_load_failures",
            "Failed attempts to fetch or load the model or its labels (each is retried)",
            registry=r,
        )
        self.ready = Gauge(
            "birdwatch_ready",
            "1 while /readyz says ready (model loaded, partitions assigned, not stopping)",
            registry=r,
        )
        self.rebalances = Counter(
            "birdwatch_rebalances", "Partition assignments received", registry=r
        )
        self.paused = Gauge(
            "birdwatch_intake_paused", "1 while intake is paused by backpressure", registry=r
        )
        for status in STATUSES:
            self.results_produced.labels(status)
        for code in ErrorCode:
            self.result_errors.labels(code.value)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for form in FALLBACK_FORMS:
            self.outcome_fallbacks.labels(form)

    def set_model(self, url: str, sha256: str, backend: str) -> None:
        """Name the loaded model in `birdwatch_model_info`."""
        self.model.info({"url": url, "sha256": sha256, "backend": backend})

    def count_outcome(self, kind: str, code: str = "") -> None:
        """Count one durable outcome: "ok" or "error" results (with the error `code`), or a
        "dlq" copy."""
        self.outcomes_total += 1
        if kind == "dlq":
            self.dlq_records.inc()
            return
        self.results_produced.labels(kind).inc()
        if kind == "error":
            self.result_errors.labels(code or ErrorCode.INTERNAL.value).inc()

    # StageObserver
    def stage(self, name: str, seconds: float) -> None:
        self.stage_seconds.labels(name).observe(seconds)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.stage_seconds.labels("inference").observe(seconds)
