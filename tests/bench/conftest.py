"""Fixtures for the benchmark smoke runs: tiny photos, the tiny models, a fast loopback internet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.common import BenchContext, Site, site_mounts
from bench.inputs import Models, PhotoRecipe, PhotoSet, make_photos
from bench.netsim import LinkProfile, NetSim
from tests.conftest import TinyModels

# Small enough to keep every smoke run to a few seconds; big enough that draft() applies.
TINY_RECIPE = PhotoRecipe(large_size=(960, 720), small_long_side=160)
FAST_LINK = LinkProfile(latency_s=0.002, bandwidth_bps=0)


def write_source_photos(folder: Path) -> Path:
    """Two 'photos': mostly red and mostly blue, with some texture."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name, colour in (("red_bird.jpg", (220, 30, 30)), ("blue_bird.png", (30, 30, 220))):
        pixels = np.clip(
            np.array(colour, np.int16) + rng.integers(-20, 20, (120, 160, 3)), 0, 255
        ).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
    return folder


@pytest.fixture(scope="session")
def bench_photos(tmp_path_factory: pytest.TempPathFactory) -> PhotoSet:
    root = tmp_path_factory.mktemp("bench-photos")
    source = write_source_photos(root / "source")
    return make_photos(source, root / "photos", TINY_RECIPE)


@pytest.fixture(scope="session")
def bench_models(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Models:
    labels = tmp_path_factory.mktemp("bench-labels") / "labelmap.csv"
    labels.write_bytes(tiny_models.labels_csv)
    return Models(tiny_models.tflite, labels, tiny_models.tf2_archive)


@pytest.fixture
async def bench_ctx(
    bench_models: Models, bench_photos: PhotoSet, tmp_path: Path
) -> AsyncIterator[BenchContext]:
    """A context whose site is served in-process with a 2 ms latency and no bandwidth cap."""
    async with NetSim(site_mounts(bench_models, bench_photos), FAST_LINK) as net:
        site = Site(net.base, bench_models, bench_photos, FAST_LINK)
        yield BenchContext(tmp_path / "out", site)


@pytest.fixture
def kafka_ctx(bench_ctx: BenchContext, kafka_bootstrap: str) -> BenchContext:
    """`bench_ctx` with the session's real broker, for the Kafka scenarios."""
    bench_ctx.bootstrap = kafka_bootstrap
    return bench_ctx
