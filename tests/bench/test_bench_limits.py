"""Smoke run of the *limits* scenario: one thread, two batch sizes, very short measurements."""

from __future__ import annotations

import pytest

from bench.common import BenchContext
from bench.runner import run_scenario
from bench.scenarios import limits
from consumer.testing.models import TF_AVAILABLE

pytestmark = [pytest.mark.tf, pytest.mark.skipif(not TF_AVAILABLE, reason="no TensorFlow")]


async def test_limits_measures_the_parts_and_derives_the_bounds(bench_ctx: BenchContext) -> None:
    config = limits.Config(
        threads=(1,),
        batches=(1, 4),
        seconds=0.15,
        repeats=1,
        cold_images=2,
        tf_without_onednn=False,
    )
    result = await run_scenario("limits", bench_ctx, config)

    for backend in ("litert", "tensorflow"):
        per_batch = result["inference"][backend]["1"]
        assert set(per_batch) == {"1", "4"}
        assert all(v["median"] > 0 for v in per_batch.values())
        load = result["model_load"][backend]
        assert load["import_s"]["median"] >= 0
        assert load["warmup_s"]["median"] > 0
        assert result["download"][backend]["bytes"] > 0
        cp = result["critical_path"][backend]
        assert cp["total_s"] >= max(cp["model_path_s"], cp["image_path_s"])
        assert cp["bound_by"] in ("model", "images")
        for size in ("large", "small"):
            ceiling = result["ceiling"][backend][size]["1"]
            assert ceiling["min"] == min(ceiling["decode"], ceiling["inference"])
            assert 0 < ceiling["shared"] <= ceiling["min"]
    assert result["decode"]["large"]["draft"]["1"]["median"] > 0
    assert result["decode"]["small"]["full"]["1"]["median"] > 0
    assert result["startup_s"]["median"] > 0
    assert result["image_path_s"]["median"] > 0
    assert (bench_ctx.out_dir / "limits.png").stat().st_size > 0
    assert limits.summary(result)
