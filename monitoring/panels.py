"""The panels of the Birdwatch dashboard, one per question an operator asks, grouped in rows.

Every query selects `job=~"$job"` and uses `$__rate_interval` for rates, so it works for any
scrape interval. Traps handled: a partition reported by two members around a rebalance (max by
topic, partition), counters reset by restarts (rate/increase only), histograms summed by `le`
before `histogram_quantile`. monitoring/dashboard.py turns them into Grafana's model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RATE = "$__rate_interval"


def sel(metric: str, matchers: str = "") -> str:
    """`metric` of the selected jobs, with extra label `matchers` (e.g. 'stage="fetch"')."""
    extra = f",{matchers}" if matchers else ""
    return f'{metric}{{job=~"$job"{extra}}}'


def rate(metric: str, matchers: str = "") -> str:
    return f"rate({sel(metric, matchers)}[{RATE}])"


def quantile(q: float, bucket: str, by: str = "", matchers: str = "") -> str:
    labels = ", ".join(filter(None, [by, "le"]))
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(bucket, matchers)}))"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: Sequence[Query]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 12


def q(expr: str, legend: str) -> Query:
    return Query(expr, legend)


PER_PARTITION = "{{topic}}/{{partition}}"
STAGES_BUT_END = 'stage!="end_to_end"'
END_TO_END = 'stage="end_to_end"'
ERRORS = 'status="error"'

ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Throughput and lag",
        [
            Panel(
                "Records in, outcomes out",
                "Records read from Kafka per second, and what they became: results by status "
                "and dead-letter copies. Out below in for long means the group is falling behind.",
                [
                    q(f"sum({rate('birdwatch_records_consumed_total')})", "in"),
                    q(
                        f"sum by (status) ({rate('birdwatch_results_produced_total')})",
                        "results {{status}}",
                    ),
                    q(f"sum({rate('birdwatch_dlq_records_total')})", "dlq"),
                ],
                unit="reqps",
            ),
            Panel(
                "Consumer lag per partition",
                "Records behind the end of each partition (the member that owns it reports it).",
                [q(f"max by (topic, partition) ({sel('birdwatch_consumer_lag')})", PER_PARTITION)],
            ),
            Panel(
                "Oldest uncommitted record per partition",
                "Age of the oldest record whose offset is not committed: grows without end on a "
                "stuck partition even when lag reads 0.",
                [
                    q(
                        "max by (topic, partition) "
                        f"({sel('birdwatch_oldest_uncommitted_seconds')})",
                        PER_PARTITION,
                    )
                ],
                unit="s",
            ),
            Panel(
                "Total lag",
                "Records behind, all partitions.",
                [
                    q(
                        f"sum(max by (topic, partition) ({sel('birdwatch_consumer_lag')}))",
                        "lag",
                    )
                ],
                kind="stat",
                width=6,
            ),
            Panel(
                "Ready members",
                "Members whose /readyz says ready (model loaded, partitions assigned).",
                [q(f"sum({sel('birdwatch_ready')})", "ready")],
                kind="stat",
                width=6,
            ),
        ],
    ),
    (
        "Latency",
        [
            Panel(
                "End-to-end latency",
                "From the record's timestamp (publish) to its result, p50 and p99. At half "
                "load one consumer measured 0.14-0.41 s p50, 0.2-0.5 s p99 (docs/PERFORMANCE.md).",
                [
                    q(quantile(0.5, "birdwatch_stage_seconds_bucket", matchers=END_TO_END), "p50"),
                    q(quantile(0.99, "birdwatch_stage_seconds_bucket", matchers=END_TO_END), "p99"),
                ],
                unit="s",
            ),
            Panel(
                "Stage breakdown (mean per image)",
                "Where an image's time goes: waiting for a download slot, download, waiting for "
                "a decode thread, decode, waiting for its batch, inference (per batch).",
                [
                    q(
                        f"sum by (stage) ({rate('birdwatch_stage_seconds_sum', STAGES_BUT_END)})"
                        " / "
                        f"sum by (stage) ({rate('birdwatch_stage_seconds_count', STAGES_BUT_END)})",
                        "{{stage}}",
                    )
                ],
                unit="s",
            ),
            Panel(
                "Stage p99",
                "The slowest images of each stage.",
                [
                    q(
                        quantile(0.99, "birdwatch_stage_seconds_bucket", "stage", STAGES_BUT_END),
                        "{{stage}}",
                    )
                ],
                unit="s",
            ),
            Panel(
                "Batch size",
                "Images per inference call: small at low load (the batch window closes first), "
                "up to BIRDWATCH_MAX_BATCH_SIZE at saturation.",
                [
                    q(
                        f"sum({rate('birdwatch_batch_size_sum')}) / "
                        f"sum({rate('birdwatch_batch_size_count')})",
                        "mean",
                    ),
                    q(quantile(0.99, "birdwatch_batch_size_bucket"), "p99"),
                ],
            ),
        ],
    ),
    (
        "Outcomes",
        [
            Panel(
                "Error results by code",
                "Why images produced no prediction (schemas/errors.py lists the codes).",
                [q(f"sum by (code) ({rate('birdwatch_result_errors_total')})", "{{code}}")],
                unit="reqps",
            ),
            Panel(
                "Error ratio",
                "Error results over all results.",
                [
                    q(
                        f"sum({rate('birdwatch_results_produced_total', ERRORS)}) / "
                        f"sum({rate('birdwatch_results_produced_total')})",
                        "errors",
                    )
                ],
                unit="percentunit",
                width=6,
                kind="stat",
            ),
            Panel(
                "Dead letters and stand-ins",
                "Records not even an event with an id (DLQ), and outcomes Kafka refused that "
                "were written as a smaller stand-in, by form.",
                [
                    q(f"sum({rate('birdwatch_dlq_records_total')})", "dlq"),
                    q(
                        f"sum by (form) ({rate('birdwatch_outcome_fallbacks_total')})",
                        "stand-in {{form}}",
                    ),
                ],
                unit="reqps",
                width=6,
            ),
        ],
    ),
    (
        "Flow control and the group",
        [
            Panel(
                "Records in flight",
                "Received, outcome not yet durable; intake pauses at BIRDWATCH_MAX_IN_FLIGHT.",
                [q(f"sum by (instance) ({sel('birdwatch_records_in_flight')})", "{{instance}}")],
                width=8,
            ),
            Panel(
                "Intake paused",
                "1 while a member's intake is paused by backpressure.",
                [q(f"max by (instance) ({sel('birdwatch_intake_paused')})", "{{instance}}")],
                width=8,
            ),
            Panel(
                "Rebalances",
                "Partition assignments received: rollouts, scaling, members leaving or flapping.",
                [
                    q(
                        "sum by (instance) "
                        f"(increase({sel('birdwatch_rebalances_total')}[{RATE}]))",
                        "{{instance}}",
                    )
                ],
                width=8,
            ),
        ],
    ),
    (
        "Model and process",
        [
            Panel(
                "Model load time",
                "Seconds to fetch and load the model at start (LiteRT cold: under a second).",
                [q(f"max by (instance) ({sel('birdwatch_model_load_seconds')})", "{{instance}}")],
                unit="s",
                width=6,
                kind="stat",
            ),
            Panel(
                "Model load failures",
                "Failed attempts to fetch or load the model (each is retried).",
                [
                    q(
                        "sum by (instance) "
                        f"(increase({sel('birdwatch_model_load_failures_total')}[{RATE}]))",
                        "{{instance}}",
                    )
                ],
                width=6,
            ),
            Panel(
                "Memory (RSS)",
                "Resident memory per member: ~230 MiB saturated with LiteRT, ~1.1 GiB with "
                "TensorFlow (docs/PERFORMANCE.md).",
                [q(f"max by (instance) ({sel('process_resident_memory_bytes')})", "{{instance}}")],
                unit="bytes",
                width=6,
            ),
            Panel(
                "CPU",
                "Cores used per member.",
                [q(f"sum by (instance) ({rate('process_cpu_seconds_total')})", "{{instance}}")],
                width=6,
            ),
        ],
    ),
]


def panels() -> list[Panel]:
    """Every panel, in dashboard order."""
    return [panel for _, row in ROWS for panel in row]
