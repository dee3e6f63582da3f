"""Measurements that need a fresh process of their own (run by the *limits* scenario).

A fresh process per measurement gives TensorFlow its thread settings (they are fixed at its first
use), makes import times real, and keeps the benchmark driver out of the way. Each command prints
one JSON object on stdout.

    python -m bench.worker load-infer --backend litert --model PATH --threads 2 --batches 1,8,32
    python -m bench.worker decode --variant draft --threads 1 FILE...

Logging is configured as `birdwatch` configures it. TensorFlow's own variables (such as
TF_ENABLE_ONEDNN_OPTS) come from the environment, as they do for the service.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import spread
from consumer.model_input import INPUT_SHAPE

BLOCKS = 3


def timed_blocks(step: Callable[[], int], seconds: float, blocks: int = BLOCKS) -> list[float]:
    """Items per second of `step` (which returns how many items it did) in `blocks` blocks of
    about `seconds / blocks` each (at least one step per block)."""
    rates = []
    for _ in range(blocks):
        done, start = 0, time.perf_counter()
        while True:
            done += step()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / blocks:
                break
        rates.append(done / elapsed)
    return rates


def _unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(into, filter="data")
    return into


def load_and_infer(
    backend: str, model: Path, threads: int, batches: list[int], seconds: float
) -> dict[str, Any]:
    from consumer.native_logs import quiet_native_stderr

    out: dict[str, Any] = {"backend": backend, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp, quiet_native_stderr():
        # The import time: the model package and the backend's framework, as the service pays.
        start = time.perf_counter()
        from consumer.model import BUILTIN_BACKENDS

        chosen = BUILTIN_BACKENDS.named(backend)
        chosen.preload()
        out["import_s"] = time.perf_counter() - start
        path = model
        if model.name.endswith(".tar.gz"):
            start = time.perf_counter()
            path = _unpack(model, Path(tmp))
            out["unpack_s"] = time.perf_counter() - start
        start = time.perf_counter()
        classifier = chosen.load(path, threads)
        out["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        classifier.predict(np.zeros((1, *INPUT_SHAPE), np.uint8))
        out["warmup_s"] = time.perf_counter() - start

        rng = np.random.default_rng(0)
        inference: dict[str, Any] = {}
        for size in batches:
            batch = rng.integers(0, 256, (size, *INPUT_SHAPE), dtype=np.uint8)
            classifier.predict(batch)  # the first call at a new size reallocates / retraces

            def step(batch: np.ndarray[Any, Any] = batch) -> int:
                classifier.predict(batch)
                return int(batch.shape[0])

            inference[str(size)] = spread(timed_blocks(step, seconds)).as_dict()
        out["inference"] = inference
    return out


def decode_rate(files: list[Path], variant: str, threads: int, seconds: float) -> dict[str, Any]:
    from bench.decoding import DECODERS

    decode = DECODERS[variant]
    payloads = [f.read_bytes() for f in files]
    for data in payloads:
        decode(data)  # warm the caches and Pillow's plugin registry
    with ThreadPoolExecutor(threads) as pool:

        def step() -> int:
            work = payloads * threads
            list(pool.map(decode, work))
            return len(work)

        rates = timed_blocks(step, seconds)
    return {
        "variant": variant,
        "threads": threads,
        "images": len(files),
        "mean_bytes": sum(map(len, payloads)) / len(payloads),
        "images_per_s": spread(rates).as_dict(),
    }


def configure_like_the_service() -> None:
    from consumer.config import LogFormat
    from consumer.logs import configure_logging

    configure_logging("WARNING", LogFormat.JSON)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    infer = sub.add_parser("load-infer")
    infer.add_argument("--backend", choices=["litert", "tensorflow"], required=True)
    infer.add_argument("--model", type=Path, required=True)
    infer.add_argument("--threads", type=int, default=1)
    infer.add_argument("--batches", default="1,8,32")
    infer.add_argument("--seconds", type=float, default=1.5)
    dec = sub.add_parser("decode")
    dec.add_argument("--variant", choices=["draft", "full"], required=True)
    dec.add_argument("--threads", type=int, default=1)
    dec.add_argument("--seconds", type=float, default=1.5)
    dec.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    configure_like_the_service()
    if args.command == "load-infer":
        batches = [int(b) for b in args.batches.split(",") if b]
        result = load_and_infer(args.backend, args.model, args.threads, batches, args.seconds)
    else:
        result = decode_rate(args.files, args.variant, args.threads, args.seconds)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
