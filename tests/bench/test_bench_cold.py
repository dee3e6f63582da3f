"""Smoke run of the *cold* scenario: one image, one round, the tiny models."""

from __future__ import annotations

import json

import pytest

from bench import report
from bench.common import BenchContext
from bench.records import cold_ratios
from bench.runner import run_scenario, summarize
from bench.scenarios import cold
from consumer.testing.models import TF_AVAILABLE

pytestmark = [pytest.mark.tf, pytest.mark.skipif(not TF_AVAILABLE, reason="no TensorFlow")]


async def test_cold_compares_birdwatch_with_the_naive_baseline(bench_ctx: BenchContext) -> None:
    # Birdwatch on LiteRT only: its TensorFlow run is the same command (tested in tests/consumer)
    # and would double the time of this smoke run.
    config = cold.Config(runs=1, images=1, backends=("litert",))
    result = await run_scenario("cold", bench_ctx, config)

    assert set(result["variants"]) == {"naive-litert", "birdwatch-litert", "naive-tensorflow"}
    for name, data in result["variants"].items():
        (run,) = data["runs"]
        assert run["exit"] == 0, name
        assert (run["images"], run["ok"]) == (1, 1), name
        assert run["wall_s"] > 0
        if name.startswith("birdwatch-"):
            assert run["breakdown"]["total_s"] > 0
    ratios = result["ratios"]["litert"]
    assert ratios["vs_original"]["median"] > 0
    assert ratios["vs_same_backend"]["n"] == 1
    assert ratios["vs_critical_path"]["median"] > 0
    path = ratios["critical_path"]
    assert path["total_s"]["median"] >= path["model_path_s"]["median"] > 0
    assert result["litert_imports_tensorflow"] is False

    saved = json.loads((bench_ctx.out_dir / "cold.json").read_text())
    assert saved["scenario"] == "cold"
    assert (bench_ctx.out_dir / "cold.png").stat().st_size > 0
    lines = summarize(bench_ctx.out_dir, ["cold"])
    assert any("speed-up birdwatch-litert" in line for line in lines)
    assert any("TensorFlow not imported" in line for line in lines)
    # The report reads the same result back as typed records.
    ratios_read = cold_ratios(saved)["litert"]
    assert ratios_read.vs_critical_path is not None
    assert ratios_read.vs_critical_path.median == ratios["vs_critical_path"]["median"]
    table = "\n".join(report.markdown(bench_ctx.out_dir))
    assert "| birdwatch-litert |" in table
    assert "critical path parts" in table
    assert "### targets" in table
