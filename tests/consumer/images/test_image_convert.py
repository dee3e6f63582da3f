"""Converting any mode to 8-bit RGB (consumer/images/convert.py): transparency on white, high
bit depths scaled, large images shrunk band by band like a direct resize."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from consumer.images.decode import to_rgb
from consumer.model_input import INPUT_SIZE
from tests.consumer.images.decode_support import (
    BLACK,
    BLUE,
    GREEN,
    RED,
    WHITE,
    Colour,
    assert_colour,
    decode,
    encode,
)


def test_rgba_transparent_pixels_become_white() -> None:
    img = Image.new("RGBA", (64, 32), (0, 0, 0, 0))  # transparent *black*: must not stay black
    img.paste((255, 0, 0, 255), (0, 0, 32, 32))
    out = decode(encode(img, "PNG"))
    assert_colour(out[:, :100], RED, 0)
    assert_colour(out[:, 124:], WHITE, 0)


def test_half_transparent_red_is_composited_on_white() -> None:
    out = decode(encode(Image.new("RGBA", (20, 20), (255, 0, 0, 128)), "PNG"))
    assert_colour(out, (255, 127, 127), 1)


def test_la_transparency_becomes_white() -> None:
    img = Image.new("LA", (64, 32), (0, 0))
    img.paste((0, 255), (0, 0, 32, 32))
    out = decode(encode(img, "PNG"))
    assert_colour(out[:, :100], BLACK, 0)
    assert_colour(out[:, 124:], WHITE, 0)


def paletted_with_transparent_index() -> Image.Image:
    """Left half palette index 0 (green, opaque), right half index 1 (red, transparent)."""
    img = Image.new("P", (64, 32), 1)
    img.putpalette([0, 255, 0, 255, 0, 0] + [0, 0, 0] * 254)
    img.paste(0, (0, 0, 32, 32))
    img.info["transparency"] = 1
    return img


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_becomes_white(fmt: str) -> None:
    data = encode(paletted_with_transparent_index(), fmt, transparency=1)
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode == "P"
        assert "transparency" in probe.info
    out = decode(data)
    assert_colour(out[:, :100], GREEN, 0)
    assert_colour(out[:, 124:], WHITE, 0)


def test_palette_without_transparency_keeps_its_colours() -> None:
    img = paletted_with_transparent_index()
    del img.info["transparency"]
    out = decode(encode(img, "PNG"))
    assert_colour(out[:, :100], GREEN, 0)
    assert_colour(out[:, 124:], RED, 0)


def sixteen_bit(left: int, right: int) -> Image.Image:
    array = np.full((30, 40), right, dtype=np.uint16)
    array[:, :20] = left
    img = Image.fromarray(array)
    assert img.mode == "I;16"
    return img


def test_16_bit_png_is_scaled_to_8_bits() -> None:
    data = encode(sixteen_bit(65535, 32768), "PNG")
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode == "I;16"
    out = decode(data)
    assert_colour(out[:, :100], WHITE, 1)  # 65535 -> ~255, not clipped garbage
    assert_colour(out[:, 124:], (128, 128, 128), 1)  # 32768 -> ~128, not 255 (unscaled clip)


def test_16_bit_dark_values_stay_dark() -> None:
    out = decode(encode(sixteen_bit(256, 255), "PNG"))
    assert_colour(out[:, :100], (1, 1, 1), 0)
    assert_colour(out[:, 124:], BLACK, 0)


def test_16_bit_big_endian_tiff_is_scaled_to_8_bits() -> None:
    big_endian = Image.fromarray(np.asarray(sixteen_bit(65535, 32768)).astype(">u2"))
    data = encode(big_endian, "TIFF")
    assert data.startswith(b"MM\x00*")
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode == "I;16B"
    out = decode(data)
    assert_colour(out[:, :100], WHITE, 1)
    assert_colour(out[:, 124:], (128, 128, 128), 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (60000, 234),  # a peak above 255 means 16-bit data held in 32 bits: divide by 256
        (200, 200),  # a peak within 8 bits is taken as is
    ],
)
def test_32_bit_integer_tiff_is_scaled_by_its_peak(value: int, expected: int) -> None:
    data = encode(Image.new("I", (30, 20), value), "TIFF")
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.mode == "I"
    assert_colour(decode(data), (expected, expected, expected), 1)


def test_float_tiff_becomes_gray() -> None:
    data = encode(Image.new("F", (30, 20), 180.0), "TIFF")
    assert_colour(decode(data), (180, 180, 180), 0)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("RGBA", (0, 0, 255, 0), WHITE),
        ("PA", (0, 0), WHITE),
        ("RGBa", (0, 0, 0, 0), WHITE),
        ("La", (0, 0), WHITE),
        ("YCbCr", (76, 85, 255), (254, 0, 0)),
        ("CMYK", (255, 0, 255, 0), GREEN),
        ("I;16L", 65535, WHITE),
        ("I;16B", 32768, (128, 128, 128)),
    ],
)
def test_to_rgb_handles_each_mode(mode: str, value: Any, expected: Colour) -> None:
    rgb = to_rgb(Image.new(mode, (4, 4), value))
    assert rgb.mode == "RGB"
    assert_colour(np.asarray(rgb), expected, 2)


def test_to_rgb_returns_an_rgb_image_unchanged() -> None:
    img = Image.new("RGB", (4, 4), RED)
    assert to_rgb(img) is img


def direct_resize(img: Image.Image) -> NDArray[np.int16]:
    """What a plain full-size conversion and resize gives, for comparison."""
    rgb = img.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.int16)


def test_a_large_image_is_shrunk_in_bands_like_a_direct_resize() -> None:
    # Stripes of 37 rows (not a multiple of the band height or the factor) and a gradient.
    size = (3100, 2300)
    rows = (np.arange(size[1])[:, None] // 37 % 2) * 200
    cols = np.linspace(0, 55, size[0])[None, :]
    grey = (rows + cols).astype(np.uint8)
    img = Image.fromarray(np.stack([grey, 255 - grey, grey // 2], axis=-1))
    out = decode(encode(img, "PNG")).astype(np.int16)
    assert float(np.abs(out - direct_resize(img)).mean()) < 3.0


def test_bands_of_a_wide_image_land_in_their_rows() -> None:
    img = Image.new("RGB", (9000, 1400), BLUE)
    img.paste(RED, (0, 0, 9000, 700))  # top half red: a band per few hundred rows
    out = decode(encode(img, "PNG"))
    assert_colour(out[:100], RED, 2)
    assert_colour(out[-100:], BLUE, 2)


def test_an_integer_image_is_scaled_by_its_whole_peak_in_every_band() -> None:
    # Only the bottom rows pass 255: the top bands must be scaled like them (by 1/256).
    values = np.full((2000, 2000), 25_600, dtype=np.int32)
    values[1500:] = 51_200
    img = Image.fromarray(values, mode="I")
    out = decode(encode(img, "TIFF"))
    assert_colour(out[:100], (100, 100, 100), 1)
    assert_colour(out[-30:], (200, 200, 200), 1)


def test_a_large_transparent_palette_image_turns_white_in_every_band() -> None:
    img = Image.new("P", (2600, 2600), 0)
    img.putpalette([*RED, *BLUE] + [0] * 762)
    img.paste(1, (0, 1300, 2600, 2600))
    out = decode(encode(img, "PNG", transparency=0))
    assert_colour(out[:100], WHITE, 1)
    assert_colour(out[-100:], BLUE, 1)
