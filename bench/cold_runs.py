"""Cold runs of the *cold* scenario: one fresh process (`birdwatch classify` or the naive
baseline) with an empty model cache, timed from its spawn to its last result; and the probe
that a LiteRT run never imports TensorFlow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Backend, BenchContext
from bench.paths import BIRDWATCH, PYTHON, REPO

# Runs `birdwatch classify` in this process, then records whether TensorFlow got imported.
_IMPORT_PROBE = """
import json, sys
from consumer import cli
code = cli.main(["classify", "--json", *sys.argv[2:]])
imported = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
open(sys.argv[1], "w").write(json.dumps({"exit": code, "tensorflow_modules": len(imported)}))
"""


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIRDWATCH_")}
    env.update(extra)
    return env


async def timed_process(
    args: list[str], env: dict[str, str], stderr_path: Path, timeout_s: float
) -> dict[str, Any]:
    """Run `args`; the wall time runs from just before the spawn to the last JSON result line."""
    with stderr_path.open("wb") as err:
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=err, env=env, cwd=str(REPO)
        )
        assert proc.stdout is not None
        lines: list[dict[str, Any]] = []
        last = start
        try:
            async with asyncio.timeout(timeout_s):
                async for raw in proc.stdout:
                    with contextlib.suppress(json.JSONDecodeError):
                        lines.append(json.loads(raw))
                        last = time.perf_counter()
                code = await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    return {"wall_s": last - start, "results": lines, "exit": code}


def _ok(result: dict[str, Any]) -> bool:
    return result.get("status") == "ok" or "top3" in result


def _run_done(stderr_path: Path) -> dict[str, Any]:
    """The `run_done` log event of a Birdwatch run (its own timing breakdown)."""
    for line in stderr_path.read_bytes().splitlines():
        if line.startswith(b"{"):
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                if event.get("event") == "run_done":
                    return {k: v for k, v in event.items() if k.endswith("_s") or k == "batches"}
    return {}


async def run_variant(
    ctx: BenchContext, name: str, urls: list[str], timeout_s: float, log_dir: Path
) -> dict[str, Any]:
    """One cold run of variant `name` ("naive-litert", "birdwatch-tensorflow"...) with an empty
    model cache: its wall time, results and (Birdwatch) its own timing breakdown."""
    kind, backend_name = name.split("-", 1)
    backend: Backend = "litert" if backend_name == "litert" else "tensorflow"
    site = ctx.site
    with tempfile.TemporaryDirectory(prefix="bench-cold-cache-") as cache:
        stderr_path = log_dir / f"{name}.stderr"
        if kind == "naive":
            args = [
                PYTHON,
                "-m",
                "bench.naive",
                "--model",
                site.model_url(backend),
                "--labels",
                site.labels_url,
                "--cache",
                cache,
                *urls,
            ]
            env = _clean_env({})
        else:
            args = [BIRDWATCH, "classify", "--json", *urls]
            env = _clean_env(
                {
                    **site.service_env(backend),
                    "BIRDWATCH_MODEL_CACHE_DIR": cache,
                    "BIRDWATCH_LOG_FORMAT": "json",
                }
            )
        outcome = await timed_process(args, env, stderr_path, timeout_s)
    results = outcome.pop("results")
    outcome["images"] = len(results)
    outcome["ok"] = sum(_ok(r) for r in results)
    if kind == "birdwatch":
        outcome["breakdown"] = _run_done(stderr_path)
    return outcome


async def probe_tensorflow_import(ctx: BenchContext, urls: list[str], log_dir: Path) -> bool | None:
    """True when a LiteRT `birdwatch classify` imported TensorFlow (it must not)."""
    out = log_dir / "litert-imports.json"
    with tempfile.TemporaryDirectory(prefix="bench-cold-cache-") as cache:
        env = _clean_env(
            {
                **ctx.site.service_env("litert"),
                "BIRDWATCH_MODEL_CACHE_DIR": cache,
                "BIRDWATCH_LOG_FORMAT": "json",
            }
        )
        proc = await asyncio.create_subprocess_exec(
            PYTHON,
            "-c",
            _IMPORT_PROBE,
            str(out),
            *urls,
            env=env,
            cwd=str(REPO),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
    if not out.exists():
        return None
    return bool(json.loads(out.read_text())["tensorflow_modules"])
