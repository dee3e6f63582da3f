"""Hostile responses, with the peak memory each one costs measured.

A child process fetches and decodes each URL with the real image layer (ImageFetcher with the
default 20 MiB body cap, decode_image with the default pixel cap) and reports the outcome, the
tracemalloc peak and the rise of its resident-set high-water mark (VmHWM, reset before each
URL). The hostile host runs here, on loopback. Memory bounds are asserted; times are reported.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import struct
import sys
import zlib
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from consumer.config import Settings
from tests.conftest import LoopbackServer
from tests.images import HTML_PAGE
from tests.reliability_support import child_env, record_figures

pytestmark = pytest.mark.slow

MAX_BYTES: int = Settings.model_fields["max_image_bytes"].default  # 20 MiB
MAX_PIXELS: int = Settings.model_fields["max_image_pixels"].default  # 100 MP
# What a hostile response may cost at most: the body cap plus a generous 64 MiB of overhead.
BOUND_MIB = MAX_BYTES / 2**20 + 64
GIB = 2**30

SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9e9" height="9e9"/>'


def png_claiming(width: int, height: int) -> bytes:
    """A complete, valid PNG (a few KB at most) whose header claims `width`x`height`."""
    buf = io.BytesIO()
    Image.new("1", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 header claims `width`x`height`."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    # SOF0: marker, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def noisy_jpeg(size: tuple[int, int]) -> bytes:
    rng = random.Random(7)
    img = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def gzip_bomb(decompressed: int) -> bytes:
    """gzip of `decompressed` zero bytes (about 1/1000 of that)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(2**20)
    parts = [packer.compress(block) for _ in range(decompressed // len(block))]
    parts.append(packer.flush())
    return b"".join(parts)


def add_hostile_routes(
    server: LoopbackServer,
) -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
    """The hostile URLs by name, payload sizes, and (filled in as they go) how many bytes the
    streaming routes actually sent."""
    sent: dict[str, int] = {}
    chunk = b"\x00" * 65_536

    async def claims_2_gb(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = 2 * GIB
        await resp.prepare(request)
        sent["content_length_2gb"] = 0
        try:
            for _ in range(2 * GIB // len(chunk)):
                await resp.write(chunk)
                sent["content_length_2gb"] += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        sent["endless_chunked"] = 0
        try:
            for _ in range(16 * GIB // len(chunk)):  # "endless": 16 GiB if nobody hangs up
                await resp.write(b"\xff\xd8\xff" + chunk)
                sent["endless_chunked"] += len(chunk) + 3
        except (ConnectionError, RuntimeError):
            pass
        return resp

    bomb = gzip_bomb(GIB)

    async def gzip_bomb_handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "image/jpeg"}
        )

    truncated = noisy_jpeg((800, 600))
    urls = {
        "content_length_2gb": server.add_handler("/h/2gb.jpg", claims_2_gb),
        "endless_chunked": server.add_handler("/h/endless.jpg", endless),
        "gzip_bomb_1gib": server.add_handler("/h/bomb.jpg", gzip_bomb_handler),
        "png_50000x50000": server.add_bytes(
            "/h/huge.png", png_claiming(50_000, 50_000), "image/png"
        ),
        "jpeg_50000x50000": server.add_bytes(
            "/h/huge.jpg", jpeg_claiming(50_000, 50_000), "image/jpeg"
        ),
        "truncated_jpeg": server.add_bytes(
            "/h/truncated.jpg", truncated[: len(truncated) // 2], "image/jpeg"
        ),
        "svg_as_image": server.add_bytes("/h/bird.svg", SVG, "image/svg+xml"),
        "html_as_jpeg": server.add_bytes("/h/bird.jpg", HTML_PAGE, "image/jpeg"),
        # For comparison: what an honest 12 MP photo costs.
        "honest_12mp_jpeg": server.add_bytes(
            "/h/photo.jpg", noisy_jpeg((4000, 3000)), "image/jpeg"
        ),
    }
    sizes = {
        "gzip_bomb_1gib": len(bomb),
        "png_50000x50000": len(png_claiming(50_000, 50_000)),
        "jpeg_50000x50000": len(jpeg_claiming(50_000, 50_000)),
    }
    return urls, sizes, sent


EXPECTED = {
    "content_length_2gb": ("too_large", "Content-Length"),
    "endless_chunked": ("too_large", "body exceeds"),
    "gzip_bomb_1gib": ("too_large", "body exceeds"),
    "png_50000x50000": ("too_large", "pixels"),
    "jpeg_50000x50000": ("too_large", "pixels"),
    "truncated_jpeg": ("decode_failed", "truncated"),
    "svg_as_image": ("not_an_image", "not a supported image"),
    "html_as_jpeg": ("not_an_image", "not a supported image"),
    "honest_12mp_jpeg": ("ok", ""),
}


async def test_hostile_responses_are_refused_with_bounded_memory(
    http_server: LoopbackServer,
) -> None:
    urls, sizes, sent = add_hostile_routes(http_server)
    spec = json.dumps({"urls": urls, "max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS})
    code = "from tests.reliability_support import measure_hostile_fetches as m; m()"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        spec,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), 180)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == 0, err.decode(errors="replace")[-3000:]
    measured: dict[str, dict[str, Any]] = json.loads(out.decode().strip().splitlines()[-1])

    assert set(measured) == set(EXPECTED)
    for name, (code_expected, words) in EXPECTED.items():
        got = measured[name]
        assert got["code"] == code_expected, (name, got)
        assert words.lower() in got["message"].lower(), (name, got)
        assert got["tracemalloc_peak_mib"] < BOUND_MIB, (name, got)
        if got["rss_peak_rise_mib"] is not None:
            assert got["rss_peak_rise_mib"] < BOUND_MIB, (name, got)
    # The streaming hosts were cut off long before they were done.
    assert sent["content_length_2gb"] < 256 * 2**20
    assert sent["endless_chunked"] < 256 * 2**20

    record_figures(
        "hostile_responses",
        {
            "faults_injected": len(EXPECTED) - 1,
            "max_image_bytes": MAX_BYTES,
            "max_image_pixels": MAX_PIXELS,
            "memory_bound_mib": BOUND_MIB,
            "payload_bytes": sizes,
            "bytes_sent_before_cut_off": sent,
            "results": measured,
        },
    )
