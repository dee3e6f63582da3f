"""Smoke run of the *knobs* scenario: one LiteRT setting against the default, one round."""

from __future__ import annotations

import pytest

from bench.common import BenchContext
from bench.runner import run_scenario
from bench.scenarios import knobs

pytestmark = pytest.mark.kafka


async def test_knobs_compares_a_setting_with_the_default(kafka_ctx: BenchContext) -> None:
    pair = knobs.Pair("one thread", "litert", {"BIRDWATCH_INFERENCE_THREADS": "1"})
    config = knobs.Config(
        pairs=(pair,), rounds=1, burst_events=10, phase_seconds=0.5, partitions=2, timeout_s=60
    )
    result = await run_scenario("knobs", kafka_ctx, config)

    data = result["pairs"]["one thread"]
    assert data["offered_per_s"] > 0
    for side in ("default", "knob_result"):
        assert data[side]["capacity_per_s"]["median"] > 0
        assert data[side]["p99_ms"]["median"] >= data[side]["p50_ms"]["median"] > 0
    assert data["capacity_ratio"]["n"] == data["p99_ratio"]["n"] == 1
    assert (kafka_ctx.out_dir / "knobs.png").stat().st_size > 0
    assert knobs.summary(result)
