"""Helpers for the fault-injection tests (tests/consumer/test_reliability_*.py).

- `record_figures` writes what a fault test measured to `.cache/reliability/<name>.json`, which
  docs/RELIABILITY.md reports;
- `FaultyHost` is a raw TCP "image host" that hangs, trickles bytes or resets the connection;
- `measure_hostile_fetches` is a child-process entry point that fetches and decodes URLs with
  the real image layer and reports, per URL, the outcome and the peak memory it cost.

Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import os
import socket
import struct
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIGURES_DIR = REPO / ".cache" / "reliability"


# --- figures ---------------------------------------------------------------------------------


def record_figures(name: str, figures: dict[str, Any]) -> Path:
    """Write `figures` (JSON-able) to .cache/reliability/`name`.json and print them."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{name}.json"
    payload = {"test": name, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}
    payload.update(figures)
    text = json.dumps(payload, indent=2, sort_keys=False, default=str)
    path.write_text(text + "\n")
    print(f"\nreliability figures ({path.relative_to(REPO)}):\n{text}")
    return path


def duplicates(ids: list[str]) -> int:
    """How many results beyond the first per id."""
    return sum(n - 1 for n in Counter(ids).values())


async def produce_paced(
    bootstrap: str, topic: str, events: list[tuple[str, str]], per_s: float, chunk: int = 20
) -> float:
    """Produce one ImageEvent per (id, url), keyed by id, at about `per_s` events a second (a
    stream rather than a backlog); returns the seconds it took."""
    from aiokafka import AIOKafkaProducer

    from consumer.testing.topics import event_value

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    started = time.monotonic()
    try:
        for first in range(0, len(events), chunk):
            part = events[first : first + chunk]
            acks = [
                await producer.send(topic, event_value(eid, url), key=eid.encode())
                for eid, url in part
            ]
            await asyncio.gather(*acks)
            due = started + (first + len(part)) / per_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    finally:
        await producer.stop()
    return time.monotonic() - started


# --- a misbehaving image host ------------------------------------------------------------------


class FaultyHost:
    """A raw HTTP/1.1 host on 127.0.0.1 whose behaviour is chosen by the request path:

    - `/hang/...`: reads the request, never answers (until released or `linger_s`);
    - `/trickle/...`: sends headers promising 1 MB, then one byte every `trickle_every_s`;
    - `/reset/...`: reads the request, then resets the connection (RST, SO_LINGER 0).

    `connections` counts requests per behaviour; `open_s` records how long each connection was
    held open by the client (what a timeout bounds).
    """

    def __init__(self, linger_s: float = 60.0, trickle_every_s: float = 0.25) -> None:
        self.linger_s = linger_s
        self.trickle_every_s = trickle_every_s
        self.connections: Counter[str] = Counter()
        self.open_s: dict[str, list[float]] = {}
        self._release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.base = ""

    async def __aenter__(self) -> FaultyHost:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 10)

    def url(self, behaviour: str, name: str) -> str:
        return f"{self.base}/{behaviour}/{name}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        behaviour = "?"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            path = head.split(b" ", 2)[1].decode()
            behaviour = path.strip("/").split("/", 1)[0]
            self.connections[behaviour] += 1
            if behaviour == "hang":
                await self._until_gone(reader, self.linger_s)
            elif behaviour == "trickle":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                    b"Content-Length: 1000000\r\n\r\n\xff\xd8\xff"
                )
                deadline = started + self.linger_s
                while time.monotonic() < deadline and not self._release.is_set():
                    await asyncio.sleep(self.trickle_every_s)
                    writer.write(b"\x00")
                    await writer.drain()
            elif behaviour == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError):
            pass
        finally:
            self.open_s.setdefault(behaviour, []).append(round(time.monotonic() - started, 3))
            writer.close()

    async def _until_gone(self, reader: asyncio.StreamReader, limit_s: float) -> None:
        """Wait until the client closes the connection, the host is released, or `limit_s`."""
        reading = asyncio.ensure_future(reader.read())  # returns b"" at EOF
        releasing = asyncio.ensure_future(self._release.wait())
        try:
            await asyncio.wait({reading, releasing}, timeout=limit_s, return_when="FIRST_COMPLETED")
        finally:
            reading.cancel()
            releasing.cancel()


# --- peak memory of hostile fetches, in a child process -------------------------------------------


def _proc_status_kib(field_name: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def _release_free_memory() -> None:
    """Hand freed heap back to the OS, so that what the next fetch touches shows in the RSS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _measure(urls: dict[str, str], max_bytes: int, max_pixels: int) -> dict[str, Any]:
    from consumer.images import FetchPolicy, ImageError, ImageFetcher, make_image_session
    from consumer.images.decode import decode_image

    policy = FetchPolicy(
        timeout_s=20.0, connect_timeout_s=5.0, retries=0, max_bytes=max_bytes, allow_private=True
    )
    out: dict[str, Any] = {}
    async with make_image_session(policy, 4) as session:
        fetcher = ImageFetcher(session, policy, 4)
        for name, url in urls.items():
            _release_free_memory()
            reset = _reset_peak_rss()
            rss_before = _proc_status_kib("VmRSS") or 0
            tracemalloc.start()
            started = time.monotonic()
            code, message = "ok", ""
            try:
                data = await fetcher.fetch(url)
                decode_image(data, max_pixels)
                del data
            except ImageError as exc:
                code, message = exc.code.value, exc.message
            elapsed = time.monotonic() - started
            _, traced_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            hwm = _proc_status_kib("VmHWM") or 0
            out[name] = {
                "code": code,
                "message": message[:200],
                "seconds": round(elapsed, 3),
                "tracemalloc_peak_mib": round(traced_peak / 2**20, 2),
                "rss_before_mib": round(rss_before / 1024, 1),
                # With the reset, VmHWM is the peak of this fetch alone.
                "rss_peak_rise_mib": round(max(0, hwm - rss_before) / 1024, 1) if reset else None,
            }
    return out


def measure_hostile_fetches() -> None:
    """Child-process entry point: argv[1] is JSON {"urls": {name: url}, "max_bytes",
    "max_pixels"}; prints one JSON object {name: {code, message, seconds, memory...}}."""
    spec = json.loads(sys.argv[1])
    result = asyncio.run(_measure(spec["urls"], spec["max_bytes"], spec["max_pixels"]))
    sys.stdout.write(json.dumps(result) + "\n")


def child_env(**extra: str) -> dict[str, str]:
    """This environment without BIRDWATCH_*, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIRDWATCH_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t:` ... then t[0] holds the seconds the block took."""
    box: list[float] = []
    started = time.monotonic()
    try:
        yield box
    finally:
        box.append(round(time.monotonic() - started, 3))
