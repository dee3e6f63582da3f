"""The pixel limit (`max_pixels`), checked from the header before any pixel is decoded, and
Pillow's own decompression-bomb checks reported as `too_large`."""

from __future__ import annotations

import struct
import time
import warnings
import zlib
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from schemas import ErrorCode
from tests.consumer.images.decode_support import (
    BLUE,
    RED,
    assert_colour,
    decode,
    encode,
    expect_error,
    png_with_claimed_size,
)


@pytest.fixture
def no_pixel_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a PNG's pixels are ever decoded."""

    def refuse(self: PngImagePlugin.PngImageFile) -> Any:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", refuse)


@pytest.mark.usefixtures("no_pixel_loading")
@pytest.mark.parametrize(
    "size",
    [
        (12_000, 12_000),  # 144 MP: above our limit, below Pillow's own bomb error
        (50_000, 50_000),  # 2.5 GP: Pillow's bomb error, still reported as too large
    ],
)
def test_huge_claimed_dimensions_are_too_large_without_decoding(size: tuple[int, int]) -> None:
    data = png_with_claimed_size(*size)
    assert len(data) < 200
    started = time.perf_counter()
    expect_error(data, ErrorCode.TOO_LARGE)
    assert time.perf_counter() - started < 0.5


def test_complete_huge_bilevel_png_is_too_large_quickly() -> None:
    # A complete 12,000 x 12,000 one-bit white image (144 MP, under Pillow's own bomb error):
    # 18 MB of scanlines deflate to about 35 KB.
    line = b"\x00" + b"\xff" * (12_000 // 8)
    compressor = zlib.compressobj(6)
    idat = b"".join(compressor.compress(line * 1000) for _ in range(12)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    data = png_with_claimed_size(12_000, 12_000)[:33] + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    assert len(data) < 200_000
    started = time.perf_counter()
    error = expect_error(data, ErrorCode.TOO_LARGE, max_pixels=100_000_000)
    assert time.perf_counter() - started < 0.5
    assert "12000x12000" in error.message


@pytest.mark.parametrize(
    ("max_pixels", "ok"), [(10_000, True), (9_999, False), (100, False), (10**8, True)]
)
def test_max_pixels_is_the_limit(max_pixels: int, ok: bool) -> None:
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    if ok:
        assert_colour(decode(data, max_pixels), RED, 0)
    else:
        error = expect_error(data, ErrorCode.TOO_LARGE, max_pixels)
        assert "100x100" in error.message


def test_max_pixels_applies_to_jpeg_before_draft() -> None:
    data = encode(Image.new("RGB", (3000, 2000), RED), "JPEG")
    expect_error(data, ErrorCode.TOO_LARGE, max_pixels=5_999_999)
    assert_colour(decode(data, 6_000_000), RED, 6)


def test_pillow_bomb_warning_is_silenced_when_within_our_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1,600 pixels: above a 1,000 global limit (warning zone), below twice that (error zone).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    data = encode(Image.new("RGB", (40, 40), BLUE), "PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_colour(decode(data, 10_000), BLUE, 0)


def test_pillow_bomb_error_is_reported_as_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    data = encode(Image.new("RGB", (40, 40), BLUE), "PNG")
    error = expect_error(data, ErrorCode.TOO_LARGE, max_pixels=10_000)
    assert "1600" in error.message
