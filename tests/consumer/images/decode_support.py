"""Helpers of the decoding tests: images encoded here by Pillow, decoding them, checking
their colours, and PNGs whose header claims any size."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from consumer.images import ImageError, decode_image
from consumer.model_input import INPUT_SIZE
from schemas import ErrorCode

Colour = tuple[int, int, int]

RED: Colour = (255, 0, 0)

GREEN: Colour = (0, 255, 0)

BLUE: Colour = (0, 0, 255)

WHITE: Colour = (255, 255, 255)

BLACK: Colour = (0, 0, 0)

MAX_PIXELS = 50_000_000

ORIENTATION_TAG = 0x0112


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> NDArray[np.uint8]:
    out = decode_image(data, max_pixels)
    assert out.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    assert out.dtype == np.uint8
    return out


def assert_colour(region: NDArray[np.uint8], colour: Colour, tol: int) -> None:
    """Every pixel of `region` is within `tol` of `colour` on every channel."""
    diff = np.abs(region.astype(np.int16) - np.array(colour, dtype=np.int16))
    assert int(diff.max()) <= tol, f"max channel error {int(diff.max())} > {tol} for {colour}"


def split_image(size: tuple[int, int], left: Colour, right: Colour) -> Image.Image:
    """An RGB image whose left half is `left` and right half is `right`."""
    img = Image.new("RGB", size, right)
    img.paste(left, (0, 0, size[0] // 2, size[1]))
    return img


def expect_error(data: bytes, code: ErrorCode, max_pixels: int = MAX_PIXELS) -> ImageError:
    with pytest.raises(ImageError) as info:
        decode_image(data, max_pixels)
    assert info.value.code is code, info.value.message
    return info.value


def png_with_claimed_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR (with a correct CRC) claims `width`x`height` pixels."""
    data = bytearray(encode(Image.new("1", (1, 1)), "PNG"))
    # Signature (8) + chunk length (4) + b"IHDR" (4), then width, height, five more bytes, CRC.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)
