"""The naive baseline still classifies: top 3 per image, with either backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench import naive
from bench.common import Backend, BenchContext
from consumer.testing.models import BLUE_CLASS, RED_CLASS, TF_AVAILABLE


@pytest.mark.parametrize(
    "backend",
    [
        "litert",
        pytest.param(
            "tensorflow",
            marks=[pytest.mark.tf, pytest.mark.skipif(not TF_AVAILABLE, reason="no TensorFlow")],
        ),
    ],
)
async def test_naive_prints_the_top_three_of_each_image(
    bench_ctx: BenchContext,
    backend: Backend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = bench_ctx.site
    urls = site.photo_urls("large")  # blue_bird, red_bird
    args = ["--model", site.model_url(backend), "--labels", site.labels_url]
    args += ["--cache", str(tmp_path / "cache"), *urls]

    code = await asyncio.to_thread(naive.main, args)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [line["url"] for line in lines] == urls
    assert all(len(line["top3"]) == 3 for line in lines)
    assert lines[0]["top3"][0]["label"] == f"Species {BLUE_CLASS}"
    assert lines[1]["top3"][0]["label"] == f"Species {RED_CLASS}"
    scores = [p["score"] for p in lines[1]["top3"]]
    assert scores == sorted(scores, reverse=True)
