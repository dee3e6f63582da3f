"""Smoke run of the *stream* scenario against the real broker: LiteRT, small photos, one load."""

from __future__ import annotations

import pytest

from bench import report
from bench.common import BenchContext
from bench.runner import run_scenario
from bench.scenarios import stream

pytestmark = pytest.mark.kafka


async def test_stream_reports_capacity_latency_and_stages(kafka_ctx: BenchContext) -> None:
    config = stream.Config(
        variants=(stream.Variant("litert", "litert", sizes=("small",)),),
        loads=(0.5,),
        warmup_events=6,
        burst_seconds=0.5,
        phase_seconds=0.5,
        min_events=8,
        max_events=30,
        partitions=2,
        timeout_s=60,
        ceiling_seconds=0.1,
    )
    result = await run_scenario("stream", kafka_ctx, config)

    data = result["variants"]["litert"]["small"]
    for phase in (data["capacity"], data["loads"]["50"]):
        assert phase["ok"] == phase["events"] >= 8
        lat = phase["latency_s"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert {"fetch", "decode", "queue", "inference", "end_to_end"} <= set(phase["stages"])
        assert phase["stages"]["inference"]["count"] >= 1
        assert phase["mean_batch"] >= 1
        assert phase["p99_bound_s"] > 2 * stream.BATCH_DELAY_S
        assert phase["cpu"]["consumer_cpu_s"] > 0
    assert data["capacity"]["sustained_per_s"] > 0
    ceiling = data["ceiling"]
    assert ceiling["min"] == pytest.approx(min(ceiling["decode"], ceiling["inference"]))
    assert (
        set(ceiling["before"]) == set(ceiling["after"]) == {"decode", "inference", "min", "shared"}
    )
    assert data["capacity_vs_ceiling"] > 0
    assert data["loads"]["50"]["offered_per_s"] == pytest.approx(
        data["capacity"]["sustained_per_s"] / 2
    )
    assert (kafka_ctx.out_dir / "stream.png").stat().st_size > 0
    assert (kafka_ctx.out_dir / "stream_stages.png").stat().st_size > 0
    assert stream.summary(result)
    # The report and the targets read the saved result back as typed records.
    table = "\n".join(report.markdown(kafka_ctx.out_dir))
    assert "| litert | small |" in table
    assert "stream litert small: p99 at 50% load" in table
