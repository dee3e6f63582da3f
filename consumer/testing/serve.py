"""`birdwatch serve` in a child process, as tests and benchmarks run it: endpoints on a free
port, output to a log file, optionally pinned to one CPU. Every wait is bounded."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from consumer.testing.waiting import free_port, wait_until

BIRDWATCH = str(Path(sys.executable).with_name("birdwatch"))


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of sample `name{labels}` in Prometheus text (labels exactly), or 0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        metric, _, label_text = sample.partition("{")
        if metric != name:
            continue
        got = ",".join(sorted(p for p in label_text.rstrip("}").split(",") if p))
        if got == want:
            return float(value)
    return 0.0


def pin_to(cpu: int | None) -> Callable[[], None] | None:
    """A `preexec_fn` pinning the child (and all its threads) to one CPU, or None."""
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


class ServeProcess:
    """`birdwatch serve` (or another `command` running it) in a child process, optionally pinned
    to one CPU: output to `log_path`, endpoints on a free port. It inherits this process's
    environment except BIRDWATCH_*, which come from `env` (JSON logs unless `env` says else)."""

    # A TensorFlow model takes tens of seconds to load on this busy 2-core machine.
    ready_timeout_s = 120.0

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        cpu: int | None = None,
        command: Sequence[str] = (BIRDWATCH, "serve"),
    ) -> None:
        self.port = free_port()
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        full = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BIRDWATCH_")},
            "BIRDWATCH_LOG_FORMAT": "json",
            **env,
            "BIRDWATCH_HTTP_PORT": str(self.port),
        }
        self.proc = subprocess.Popen(
            list(command),
            env=full,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=pin_to(cpu),  # noqa: PLW1509 - sched_setaffinity only, no locks taken
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(self.url(path)) as resp,
        ):
            return resp.status, await resp.text()

    async def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            status, _ = await self.get("/readyz")
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        return status == 200

    async def wait_ready(self, timeout_s: float | None = None) -> float:
        """Wait for /readyz to answer 200 (`ready_timeout_s` by default); returns the seconds
        waited. RuntimeError when the process exits first; both errors carry the log's tail."""
        limit = self.ready_timeout_s if timeout_s is None else timeout_s
        try:
            return await wait_until(self._ready, limit, "serve /readyz", step=0.2)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        _, text = await self.get("/metrics")
        return metric_value(text, name, **labels)

    async def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait for the exit code; after `timeout_s`, SIGKILL and TimeoutError."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await wait_until(lambda: self.proc.poll() is not None, timeout_s, "serve exit")
            except TimeoutError:
                self.kill()
                raise
        return self.proc.returncode

    async def stop(self, timeout_s: float = 30.0) -> int:
        """`terminate`, where a SIGKILL after `timeout_s` is no error, then `close`; returns the
        exit code."""
        with contextlib.suppress(TimeoutError):
            await self.terminate(timeout_s)
        self.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL when still running (a crash), reap it, and close our handle on its log."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    def close(self) -> None:
        """Cleanup for a `finally`: kill the process if it still runs; the log stays readable."""
        self.kill()

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far, or only those of `event`."""
        found = []
        for line in self.log_path.read_bytes().splitlines():
            if line.startswith(b"{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    data = orjson.loads(line)
                    if event is None or data.get("event") == event:
                        found.append(data)
        return found

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])
