"""Running the tools (docker, docker compose, kubectl, the image loader) and saying what runs."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

_STARTED = time.monotonic()


class E2EError(Exception):
    """A failure the run reports in one line (no traceback): what failed and what to do."""


class Unavailable(E2EError):
    """What the run needs is not there (no Docker engine, no cluster, no data)."""


def say(message: str) -> None:
    """A progress line on stderr, with the seconds since the run started."""
    sys.stderr.write(f"[e2e {time.monotonic() - _STARTED:7.1f}s] {message}\n")
    sys.stderr.flush()


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 600,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    quiet: bool = False,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion and capture its output; raise E2EError when it fails and
    `check` is set (the message names the command and its last line of error output)."""
    if not quiet:
        say("$ " + shlex.join(cmd))
    try:
        proc = subprocess.run(
            list(cmd),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=None if env is None else {**os.environ, **env},
            cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise E2EError(f"{cmd[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise E2EError(f"timed out after {timeout:.0f} s: {shlex.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise E2EError(
            f"{shlex.join(cmd[:4])}... failed ({proc.returncode}): "
            f"{first_line(proc.stderr or proc.stdout)}"
        )
    return proc


class Background:
    """A command running beside the run: its stdout lines are collected as they come, and
    `stop()` closes its stdin (the agent's commands stop at end of input) and waits."""

    def __init__(self, cmd: Sequence[str], log: Path | None = None) -> None:
        say("$ " + shlex.join(cmd) + " &")
        self.lines: list[str] = []
        self._log = log.open("w", encoding="utf-8") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 120) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            code = self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]
        return code

    def __enter__(self) -> Background:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.running():
            self.stop(timeout=30)


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 2.0) -> float:
    """Call `check()` until it returns true; the seconds it took. E2EError after `timeout`."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise E2EError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def require_docker() -> None:
    """One clear line when no Docker engine answers (DOCKER_HOST, Docker Desktop, ...)."""
    if shutil.which("docker") is None:
        raise Unavailable("no docker command: install the Docker CLI (and an engine)")
    proc = run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], check=False, quiet=True, timeout=30
    )
    if proc.returncode != 0:
        raise Unavailable(
            "no Docker engine reachable (`docker info`: "
            f"{first_line(proc.stderr)}); start one or point DOCKER_HOST at it"
        )
    compose = run(["docker", "compose", "version", "--short"], check=False, quiet=True)
    if compose.returncode != 0:
        raise Unavailable(
            "the Docker Compose v2 plugin is missing (`docker compose version` failed)"
        )
    say(f"docker engine {proc.stdout.strip()}, compose {compose.stdout.strip()}")


def require_cluster() -> None:
    """One clear line when no Kubernetes API server answers (KUBECONFIG, kind, ...)."""
    if shutil.which("kubectl") is None:
        raise Unavailable("no kubectl command: install kubectl")
    proc = run(
        ["kubectl", "get", "--raw", "/readyz", "--request-timeout=15s"],
        check=False,
        quiet=True,
        timeout=30,
    )
    if proc.returncode != 0:
        raise Unavailable(
            "no Kubernetes cluster reachable (`kubectl get --raw /readyz`: "
            f"{first_line(proc.stderr)}); create one (kind create cluster) or set KUBECONFIG"
        )
    nodes = run(["kubectl", "get", "nodes", "-o", "name"], quiet=True)
    say(f"cluster ready, {len(nodes.stdout.split())} node(s)")
