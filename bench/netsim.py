"""A loopback "internet": an HTTP server that serves files the way a distant host would.

Every response waits `latency_s` before its headers (time to first byte: one round trip plus the
server's think time) and then streams the body in small chunks paced to `bandwidth_bps`. HTTP/1.1
serves one request at a time per connection, so the pace per response is the pace per connection;
concurrent downloads each get the full bandwidth, as they would from different hosts.

In-process::

    async with NetSim({"/photos": Path("bench/out/photos")}) as net:
        url = net.url("/photos/large/coral_parrot.jpg")

As a subprocess (prints one JSON line with the base URL, serves until SIGTERM or SIGINT)::

    python -m bench.netsim --mount /photos=bench/out/photos --latency-ms 50 --mbit 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mimetypes
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from consumer.testing.serve import pin_to

DEFAULT_LATENCY_S = 0.050
DEFAULT_BANDWIDTH_BPS = 100e6
_CHUNK = 64 * 1024
STATS_PATH = "/_netsim/stats"


@dataclass(frozen=True)
class LinkProfile:
    """What one download costs: time to first byte and bits per second (0 = unlimited)."""

    latency_s: float = DEFAULT_LATENCY_S
    bandwidth_bps: float = DEFAULT_BANDWIDTH_BPS

    def transfer_s(self, size_bytes: int) -> float:
        """Ideal time of one download of `size_bytes` over this link."""
        wire = size_bytes * 8 / self.bandwidth_bps if self.bandwidth_bps > 0 else 0.0
        return self.latency_s + wire


@dataclass
class NetStats:
    requests: int = 0
    bytes_sent: int = 0
    by_path: dict[str, int] = field(default_factory=dict)


def resolve(mounts: Mapping[str, Path], path: str) -> Path | None:
    """The file that URL `path` names under `mounts` (longest prefix first), or None.

    A mount is a file (served at exactly its prefix) or a folder (served below it); `..` never
    escapes a folder.
    """
    for prefix in sorted(mounts, key=len, reverse=True):
        target = mounts[prefix]
        clean = prefix.rstrip("/")
        if path == clean and target.is_file():
            return target
        if target.is_dir() and path.startswith(clean + "/"):
            root = target.resolve()
            candidate = (root / path[len(clean) + 1 :]).resolve()
            if candidate.is_relative_to(root) and candidate.is_file():
                return candidate
    return None


class NetSim:
    """The server; use as `async with NetSim(mounts, profile) as net`."""

    def __init__(
        self,
        mounts: Mapping[str, Path],
        profile: LinkProfile | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.mounts = {k: Path(v) for k, v in mounts.items()}
        self.profile = profile or LinkProfile()
        self.stats = NetStats()
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._bodies: dict[Path, bytes] = {}
        self.base = ""

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get(STATS_PATH, self._stats)
        app.router.add_get("/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://{self._host}:{port}"
        return self.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> NetSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _body(self, path: Path) -> bytes:
        # Inputs are a few MB each: keep them in memory so disk reads never pace a response.
        body = self._bodies.get(path)
        if body is None:
            body = self._bodies[path] = path.read_bytes()
        return body

    async def _stats(self, _: web.Request) -> web.Response:
        s = self.stats
        return web.json_response(
            {"requests": s.requests, "bytes_sent": s.bytes_sent, "by_path": s.by_path}
        )

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        self.stats.by_path[request.path] = self.stats.by_path.get(request.path, 0) + 1
        if self.profile.latency_s > 0:
            await asyncio.sleep(self.profile.latency_s)
        target = resolve(self.mounts, request.path)
        if target is None:
            return web.Response(status=404, text="not found")
        body = self._body(target)
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        resp = web.StreamResponse(headers={"Content-Type": ctype})
        resp.content_length = len(body)
        await resp.prepare(request)
        await self._send_paced(resp, body)
        await resp.write_eof()
        return resp

    async def _send_paced(self, resp: web.StreamResponse, body: bytes) -> None:
        rate = self.profile.bandwidth_bps / 8  # bytes per second
        start = time.perf_counter()
        view = memoryview(body)
        for offset in range(0, len(body), _CHUNK):
            chunk = view[offset : offset + _CHUNK]
            await resp.write(bytes(chunk))
            self.stats.bytes_sent += len(chunk)
            if rate > 0:
                ahead = start + (offset + len(chunk)) / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)


# --- as a subprocess ---------------------------------------------------------------------------


def parse_mount(text: str) -> tuple[str, Path]:
    prefix, sep, folder = text.partition("=")
    if not sep or not prefix.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected /PREFIX=PATH, got {text!r}")
    return prefix, Path(folder)


class NetSimProcess:
    """`python -m bench.netsim` in a child process; `base` is known once the constructor returns."""

    def __init__(
        self,
        mounts: Mapping[str, Path],
        profile: LinkProfile | None = None,
        cpu: int | None = None,
    ) -> None:
        profile = profile or LinkProfile()
        args = [sys.executable, "-m", "bench.netsim"]
        for prefix, target in mounts.items():
            args += ["--mount", f"{prefix}={target}"]
        args += [
            "--latency-ms",
            str(profile.latency_s * 1000),
            "--mbit",
            str(profile.bandwidth_bps / 1e6),
        ]
        self.profile = profile
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=str(Path(__file__).resolve().parents[1]),
            preexec_fn=pin_to(cpu),  # noqa: PLW1509 - sched_setaffinity only, no locks taken
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise RuntimeError(f"netsim exited with {self.proc.returncode}")
        self.base: str = json.loads(line)["base"]

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> NetSimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _main(args: argparse.Namespace) -> None:
    profile = LinkProfile(args.latency_ms / 1000, args.mbit * 1e6)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with NetSim(dict(args.mount), profile, port=args.port) as net:
        sys.stdout.write(json.dumps({"base": net.base}) + "\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mount", type=parse_mount, action="append", default=[])
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_S * 1000)
    parser.add_argument("--mbit", type=float, default=DEFAULT_BANDWIDTH_BPS / 1e6)
    parser.add_argument("--port", type=int, default=0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
