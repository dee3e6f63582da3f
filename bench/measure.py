"""Measurements of one part at a time, shared by the scenarios: process start-up, model fetch,
the image path of a cold run, inference and decode throughput (the last two in a fresh process,
see bench.worker), and the critical path they add up to."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import Backend, Site, Size
from bench.paths import PYTHON, REPO
from bench.records import Ceiling, CriticalPath, scaled

_STARTUP_PROBE = "import consumer.cli, consumer.classify"


async def worker(*args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run `python -m bench.worker ARGS` (with `env` added to the environment) and return the
    JSON it prints."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "bench.worker",
        *args,
        cwd=str(REPO),
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.worker {args[0]} failed ({proc.returncode})")
    data: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return data


async def load_and_infer(
    backend: str,
    model: Path,
    threads: int,
    batches: Sequence[int],
    seconds: float,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Import, load, warm-up times and images/s per batch size, in a fresh process (with `env`,
    e.g. a TensorFlow variable, added to its environment)."""
    args = ["load-infer", "--backend", backend, "--model", str(model), "--threads", str(threads)]
    args += ["--batches", ",".join(map(str, batches)), "--seconds", str(seconds)]
    return await worker(*args, env=env)


async def decode_rate(
    files: Sequence[Path], variant: str, threads: int, seconds: float
) -> dict[str, Any]:
    """Images/s decoding `files` to 224x224 with `threads` threads, in a fresh process."""
    args = ["decode", "--variant", variant, "--threads", str(threads), "--seconds", str(seconds)]
    return await worker(*args, *map(str, files))


async def startup_s() -> float:
    """Wall time of a process that imports what `birdwatch classify` needs, then exits."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(PYTHON, "-c", _STARTUP_PROBE, cwd=str(REPO))
    await proc.wait()
    return time.perf_counter() - start


async def model_fetch_s(url: str) -> tuple[float, int]:
    """(seconds, bytes) of fetching `url` into an empty cache with the service's fetcher
    (download, and unpack for an archive)."""
    from consumer.model import ModelFetcher

    with tempfile.TemporaryDirectory(prefix="bench-fetch-cache-") as cache:
        async with aiohttp.ClientSession() as session:
            fetcher = ModelFetcher(session, Path(cache), False)
            try:
                artifact = await fetcher.fetch_model(url)
            finally:
                fetcher.close()
    return artifact.fetch_s, artifact.size_bytes


async def image_path_s(urls: Sequence[str], decode_threads: int) -> float:
    """Fetch `urls` concurrently and decode each as it arrives, with the service's fetcher and
    decoder; seconds until all are decoded."""
    from consumer.images import FetchPolicy, ImageFetcher, decode_image, make_image_session

    policy = FetchPolicy(allow_private=True)
    loop = asyncio.get_running_loop()
    decode = functools.partial(decode_image, max_pixels=100_000_000)
    with ThreadPoolExecutor(decode_threads) as pool:
        session = make_image_session(policy, 32)
        try:
            fetcher = ImageFetcher(session, policy, 32)

            async def one(url: str) -> None:
                data = await fetcher.fetch(url)
                await loop.run_in_executor(pool, decode, data)

            start = time.perf_counter()
            await asyncio.gather(*(one(u) for u in urls))
            return time.perf_counter() - start
        finally:
            await session.close()


def critical_path(
    backend: str,
    startup: float,
    fetch: float,
    loading: dict[str, float],
    image_path: float,
    inference: float,
) -> CriticalPath:
    """The shortest a cold run can take, given its parts: start-up, then the model path and the
    image path side by side, then one inference. `loading` holds import_s, load_s, warmup_s."""
    after_fetch = loading["load_s"] + loading["warmup_s"]
    if backend == "tensorflow":
        # TensorFlow is imported while the model downloads (consumer.runtime).
        model_path = max(fetch, loading["import_s"]) + after_fetch
    else:
        model_path = fetch + loading["import_s"] + after_fetch
    return CriticalPath(
        startup_s=startup,
        model_path_s=model_path,
        image_path_s=image_path,
        inference_s=inference,
        total_s=startup + max(model_path, image_path) + inference,
        bound_by="model" if model_path >= image_path else "images",
    )


def cpu_count() -> int:
    return os.cpu_count() or 1


async def measure_ceiling(
    site: Site, backend: Backend, env: Mapping[str, str], size: Size, seconds: float
) -> Ceiling:
    """Decode and inference throughput alone, with the thread counts `env` sets."""
    cores = cpu_count()
    decode_threads = int(env.get("BIRDWATCH_DECODE_THREADS", cores))
    infer_threads = int(env.get("BIRDWATCH_INFERENCE_THREADS", cores))
    files = site.photos.large if size == "large" else site.photos.small
    dec = (await decode_rate(files, "draft", decode_threads, seconds))["images_per_s"]["median"]
    inf = await load_and_infer(
        backend,
        site.model_file(backend),
        infer_threads,
        (1, 8, 32),
        seconds,
        env={k: v for k, v in env.items() if k.startswith("TF_")},
    )
    best = max(v["median"] for v in inf["inference"].values())
    return Ceiling(decode=dec, inference=best, min=min(dec, best), shared=1 / (1 / dec + 1 / best))


def mean_ceiling(before: Ceiling, after: Ceiling) -> Ceiling:
    """The mean of two ceilings (measured before and after a burst), keeping both."""
    keys = ("decode", "inference", "min", "shared")

    def mean(key: str) -> float:
        return (scaled(getattr(before, key), 1) + scaled(getattr(after, key), 1)) / 2

    return Ceiling(
        decode=mean("decode"),
        inference=mean("inference"),
        min=mean("min"),
        shared=mean("shared"),
        before={k: getattr(before, k) for k in keys},
        after={k: getattr(after, k) for k in keys},
    )
