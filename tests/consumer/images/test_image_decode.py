"""Decoding bytes into INPUT_SIZE x INPUT_SIZE x 3 uint8 model input (consumer/images/decode.py):
sniffing, formats, JPEG draft decoding, failures and the cost read from the header, with
images generated here by Pillow."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from consumer.images import ImageDecoder, ImageError, decode_image
from consumer.images.decode import sniff_format
from consumer.model_input import INPUT_SIZE
from schemas import ErrorCode
from tests.consumer.images.decode_support import (
    BLACK,
    BLUE,
    GREEN,
    MAX_PIXELS,
    RED,
    WHITE,
    Colour,
    assert_colour,
    decode,
    encode,
    expect_error,
    split_image,
)


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG"),
        (b"GIF87a\x01\x00", "GIF"),
        (b"GIF89a\x01\x00", "GIF"),
        (b"BM\x3a\x00\x00\x00", "BMP"),
        (b"II*\x00\x08\x00", "TIFF"),
        (b"MM\x00*\x00\x00", "TIFF"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "WEBP"),
    ],
)
def test_sniff_format_names_the_format_from_magic_bytes(head: bytes, fmt: str) -> None:
    assert sniff_format(head) == fmt


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"<!doctype html><html><body>404</body></html>",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        b"%PDF-1.7\n",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",  # an MP4 video
        b'{"error": "not found"}',
    ],
)
def test_sniff_format_refuses_everything_else(head: bytes) -> None:
    with pytest.raises(ImageError) as info:
        sniff_format(head)
    assert info.value.code is ErrorCode.NOT_AN_IMAGE
    assert repr(head.lstrip()[:8]) in info.value.message


@pytest.mark.parametrize(
    ("fmt", "params", "tol"),
    [
        ("JPEG", {"quality": 95}, 6),
        ("PNG", {}, 0),
        ("BMP", {}, 0),
        ("GIF", {}, 0),
        ("TIFF", {}, 0),
        ("WEBP", {"quality": 90}, 8),
        ("WEBP", {"lossless": True}, 0),
    ],
)
@pytest.mark.parametrize("colour", [RED, (30, 160, 90)])
def test_solid_colour_survives_each_format(
    fmt: str, params: dict[str, Any], tol: int, colour: Colour
) -> None:
    data = encode(Image.new("RGB", (97, 61), colour), fmt, **params)
    assert sniff_format(data) == fmt
    assert_colour(decode(data), colour, tol)


def test_small_image_is_upscaled_to_input_size() -> None:
    out = decode(encode(Image.new("RGB", (3, 2), BLUE), "PNG"))
    assert_colour(out, BLUE, 0)


def test_size_parameter_sets_the_output_side() -> None:
    out = decode_image(encode(Image.new("RGB", (50, 40), GREEN), "PNG"), MAX_PIXELS, size=32)
    assert out.shape == (32, 32, 3)
    assert_colour(out, GREEN, 0)


def test_grayscale_becomes_three_equal_channels() -> None:
    out = decode(encode(Image.new("L", (40, 30), 100), "PNG"))
    assert_colour(out, (100, 100, 100), 0)


def test_bilevel_image_decodes_to_black_and_white() -> None:
    img = Image.new("1", (64, 32), 0)
    img.paste(1, (32, 0, 64, 32))
    out = decode(encode(img, "PNG"))
    assert_colour(out[:, :100], BLACK, 0)
    assert_colour(out[:, 124:], WHITE, 0)


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    data = encode(Image.new("CMYK", (80, 60), (0, 255, 255, 0)), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode == "CMYK"
    assert_colour(decode(data), RED, 8)


@pytest.fixture
def draft_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, int], Any]]:
    """Records each JPEG draft() request and what it returned."""
    calls: list[tuple[str, tuple[int, int], Any]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str, size: tuple[int, int]) -> Any:
        result = original(self, mode, size)
        calls.append((mode, size, result))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


def test_large_jpeg_is_decoded_at_reduced_scale(
    draft_calls: list[tuple[str, tuple[int, int], Any]],
) -> None:
    data = encode(Image.new("RGB", (3000, 2000), RED), "JPEG", quality=90)
    out = decode(data)
    assert_colour(out, RED, 6)
    assert len(draft_calls) == 1
    mode, size, result = draft_calls[0]
    assert (mode, size) == ("RGB", (INPUT_SIZE, INPUT_SIZE))
    # 1/8 DCT scale: 3000x2000 is read as 375x250, still no smaller than the 224 target.
    assert result is not None
    assert result[1][2:] == (375, 250)


def test_large_jpeg_keeps_geometry_and_colours(
    draft_calls: list[tuple[str, tuple[int, int], Any]],
) -> None:
    data = encode(split_image((3000, 2000), RED, BLUE), "JPEG", quality=90)
    out = decode(data)
    assert draft_calls
    assert_colour(out[:, :104], RED, 12)
    assert_colour(out[:, 120:], BLUE, 12)


def test_non_jpeg_is_not_drafted(draft_calls: list[tuple[str, tuple[int, int], Any]]) -> None:
    decode(encode(Image.new("RGB", (500, 400), RED), "PNG"))
    assert draft_calls == []


def test_truncated_jpeg_fails_to_decode() -> None:
    noise = np.random.default_rng(7).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=90)
    error = expect_error(data[: len(data) // 2], ErrorCode.DECODE_FAILED)
    assert "truncated" in error.message.lower()


def test_png_with_a_corrupt_pixel_stream_fails_to_decode() -> None:
    data = bytearray(encode(Image.new("RGB", (64, 64), RED), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 8] = b"\xde\xad\xbe\xef" * 2
    expect_error(bytes(data), ErrorCode.DECODE_FAILED)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<!DOCTYPE html>\n<html><head><title>Bird</title></head><body></body></html>",
        b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"><rect/></svg>',
        b'  <?xml version="1.0" encoding="UTF-8"?>\n<svg></svg>',
    ],
    ids=["empty", "html", "svg", "svg-xml"],
)
def test_non_images_are_refused(data: bytes) -> None:
    expect_error(data, ErrorCode.NOT_AN_IMAGE)


def test_known_magic_with_garbage_is_not_an_image() -> None:
    expect_error(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, ErrorCode.NOT_AN_IMAGE)


def test_no_other_parser_sees_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A plugin that would claim anything: Pillow must not fall back to it when JPEG fails.
    consulted: list[bytes] = []

    def accept(prefix: bytes) -> bool:
        consulted.append(prefix)
        return False

    monkeypatch.setitem(Image.OPEN, "CLAIMS-ALL", (Image.Image, accept))
    monkeypatch.setattr(Image, "ID", [*Image.ID, "CLAIMS-ALL"])
    png = encode(Image.new("RGB", (8, 8), RED), "PNG")
    expect_error(b"\xff\xd8\xff" + png, ErrorCode.NOT_AN_IMAGE)
    assert consulted == []


def png_header(width: int, height: int, colour_type: int, depth: int = 8) -> bytes:
    """A PNG with its header and (almost) no pixels: what `open` needs to price a decode."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    plte = chunk(b"PLTE", bytes(768)) if colour_type == 3 else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + plte
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("data", "low", "high"),
    [
        # 10,000 x 10,000 true colour: 4 bytes a pixel in Pillow, plus a band and the result.
        (png_header(10_000, 10_000, 2), 400e6, 460e6),
        # The same size paletted: 1 byte a pixel.
        (png_header(10_000, 10_000, 3), 100e6, 160e6),
        # 16-bit grey: 2 bytes a pixel.
        (png_header(10_000, 10_000, 0, 16), 200e6, 260e6),
        # A small photo costs little.
        (encode(Image.new("RGB", (640, 480), RED), "JPEG"), 0, 8e6),
    ],
    ids=["rgb-100mp", "palette-100mp", "grey16-100mp", "jpeg-vga"],
)
def test_the_cost_is_known_from_the_header(data: bytes, low: float, high: float) -> None:
    opened = ImageDecoder(max_pixels=200_000_000).open(data)
    assert low <= opened.cost_bytes <= high


def test_a_large_jpeg_is_priced_at_its_draft_scale() -> None:
    data = encode(Image.new("RGB", (6000, 4000), RED), "JPEG")
    opened = ImageDecoder(MAX_PIXELS).open(data)
    assert (opened.width, opened.height) == (6000, 4000)
    assert opened.image.size == (750, 500)  # decoded at 1/8 scale
    assert opened.cost_bytes < 16e6  # not the 96 MB of a full decode


def test_webp_is_priced_with_its_decoder_copies() -> None:
    img = Image.new("RGB", (1000, 1000), RED)
    png = ImageDecoder(MAX_PIXELS).open(encode(img, "PNG")).cost_bytes
    webp = ImageDecoder(MAX_PIXELS).open(encode(img, "WEBP")).cost_bytes
    assert webp - png == 2 * 4 * 1000 * 1000
