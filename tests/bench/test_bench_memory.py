"""Smoke run of the *memory* scenario: one LiteRT consumer, a short load."""

from __future__ import annotations

import pytest

from bench.common import BenchContext, load_json
from bench.records import MemoryResult
from bench.runner import run_scenario
from bench.scenarios import memory

pytestmark = pytest.mark.kafka


async def test_memory_samples_rss_before_and_under_load(kafka_ctx: BenchContext) -> None:
    config = memory.Config(
        variants=(memory.Variant("litert", "litert"),),
        seconds=1.5,
        rate_per_s=10,
        sample_s=0.1,
        partitions=2,
    )
    result = await run_scenario("memory", kafka_ctx, config)

    m = result["backends"]["litert"]
    assert len(m["samples"]) > 10
    assert 0 < m["idle_rss_mib"] <= m["peak_rss_mib"] <= m["hwm_mib"]
    start, end = m["load_s"]
    assert start < end
    assert m["model_bytes"] > 0
    assert {"fetch", "decode_wait", "decode"} <= set(m["images_in_stage"])
    assert set(m["images_in_stage"]) <= set(memory.OCCUPANCY_STAGES)
    assert m["in_flight"]
    assert m["growth_mib_per_min"] == m["growth_mib_per_min"]  # a number, not NaN
    assert (kafka_ctx.out_dir / "memory.png").stat().st_size > 0
    assert memory.summary(result)
    saved = load_json(kafka_ctx.out_dir, "memory")
    assert saved is not None
    record = MemoryResult.of(saved)  # what the report, plots and targets read
    assert record.variants["litert"].samples[0] == tuple(m["samples"][0])
    assert record.variants["litert"].model_bytes == m["model_bytes"]
