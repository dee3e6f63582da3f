"""The real `prometheus` server for a test: on a free loopback port, with its own data folder,
scraping the given targets every second and evaluating the given rule files every second.
Queries go through its HTTP API. Every wait is bounded."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import aiohttp
import yaml

from consumer.testing.waiting import free_port, wait_until
from tests.monitoring.support import prometheus_tool


class PrometheusServer:
    def __init__(
        self, folder: Path, job: str, targets: Sequence[str], rule_files: Sequence[Path] = ()
    ) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
        }
        config_path = folder / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = folder / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                prometheus_tool("prometheus"),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def __aenter__(self) -> Self:
        try:
            await wait_until(self._ready, 60, "prometheus /-/ready", step=0.2)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.log_tail()}")
        try:
            async with self._session.get(f"http://127.0.0.1:{self.port}/-/ready") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    async def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful API answer; AssertionError with the error otherwise."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        async with self._session.get(url, params=params) as resp:
            body = await resp.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now (a scalar comes back as one sample)."""
        data = await self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    async def finite_values(self, expr: str) -> list[float]:
        """The values of `expr` now that are numbers (NaN, as 0/0 gives, left out)."""
        values = [float(sample["value"][1]) for sample in await self.query(expr)]
        return [v for v in values if math.isfinite(v)]

    async def alerting_rules(self) -> dict[str, dict[str, Any]]:
        """Every alerting rule by name, with its `state`, `health` and `lastError`."""
        data = await self.api("rules", type="alert")
        return {rule["name"]: rule for group in data["groups"] for rule in group["rules"]}
