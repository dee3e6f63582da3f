"""Decoding bytes into 224x224x3 uint8 model input, with images generated here by Pillow."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, JpegImagePlugin, PngImagePlugin

from consumer.images import ImageDecoder, ImageError, decode_image
from consumer.images.decode import sniff_format, to_rgb
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


# --- sniffing ---------------------------------------------------------------------------------


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
        b"\x00\x00\x00\x18ftypheic",
        b'{"error": "not found"}',
    ],
)
def test_sniff_format_refuses_everything_else(head: bytes) -> None:
    with pytest.raises(ImageError) as info:
        sniff_format(head)
    assert info.value.code is ErrorCode.NOT_AN_IMAGE
    assert repr(head.lstrip()[:8]) in info.value.message


# --- formats and colour -----------------------------------------------------------------------


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


# --- transparency ------------------------------------------------------------------------------


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


# --- high bit depth ----------------------------------------------------------------------------


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


# --- geometry ------------------------------------------------------------------------------------


def test_halves_stay_on_their_side() -> None:
    out = decode(encode(split_image((400, 200), RED, BLUE), "PNG"))
    assert_colour(out[:, :108], RED, 0)
    assert_colour(out[:, 116:], BLUE, 0)


def test_resize_keeps_the_full_frame_without_cropping() -> None:
    # Thin bands at both edges of a wide image: a centre crop to a square would drop them.
    img = Image.new("RGB", (400, 100), GREEN)
    img.paste(RED, (0, 0, 40, 100))
    img.paste(BLUE, (360, 0, 400, 100))
    out = decode(encode(img, "PNG"))
    assert_colour(out[:, :20], RED, 0)  # 40/400 of 224 = 22.4 columns
    assert_colour(out[:, 25:199], GREEN, 0)
    assert_colour(out[:, 204:], BLUE, 0)


def test_tall_image_keeps_top_and_bottom() -> None:
    img = Image.new("RGB", (100, 400), GREEN)
    img.paste(RED, (0, 0, 100, 40))
    img.paste(BLUE, (0, 360, 100, 400))
    out = decode(encode(img, "PNG"))
    assert_colour(out[:20], RED, 0)
    assert_colour(out[25:199], GREEN, 0)
    assert_colour(out[204:], BLUE, 0)


# --- JPEG draft mode ---------------------------------------------------------------------------


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


# --- EXIF orientation --------------------------------------------------------------------------


def oriented_jpeg(orientation: int, size: tuple[int, int] = (320, 160)) -> bytes:
    """A landscape JPEG, left half red and right half blue, with an EXIF orientation tag."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return encode(split_image(size, RED, BLUE), "JPEG", quality=95, exif=exif.tobytes())


def side_colours(out: NDArray[np.uint8]) -> dict[str, Colour]:
    """The mean colour near the middle of each side of the output, snapped to 0 or 255."""

    def snapped(strip: NDArray[np.uint8]) -> Colour:
        red, green, blue = (round(float(c) / 255) * 255 for c in strip.reshape(-1, 3).mean(axis=0))
        return (red, green, blue)

    return {
        "top": snapped(out[:80, 72:152]),
        "bottom": snapped(out[144:, 72:152]),
        "left": snapped(out[72:152, :80]),
        "right": snapped(out[72:152, 144:]),
    }


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (1, {"left": RED, "right": BLUE}),
        (3, {"left": BLUE, "right": RED}),  # rotated 180 degrees
        (6, {"top": RED, "bottom": BLUE}),  # display = stored turned 90 degrees clockwise
        (8, {"top": BLUE, "bottom": RED}),  # display = stored turned 90 degrees anticlockwise
    ],
)
@pytest.mark.parametrize("size", [(320, 160), (3000, 1500)])
def test_exif_orientation_is_applied(
    orientation: int, expected: dict[str, Colour], size: tuple[int, int]
) -> None:
    colours = side_colours(decode(oriented_jpeg(orientation, size)))
    for side, colour in expected.items():
        assert colours[side] == colour, (side, colours)


# --- failures ----------------------------------------------------------------------------------


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


# --- pixel limits ------------------------------------------------------------------------------


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


# --- large images: band-wise reduction and the cost estimate ------------------------------------


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


def test_a_large_image_is_oriented_after_shrinking() -> None:
    img = split_image((2400, 1600), RED, BLUE)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # rotated 90 degrees clockwise when shown
    out = decode(encode(img, "PNG", exif=exif.tobytes()))
    # The left half (red) ends up at the top once turned upright.
    assert_colour(out[:80], RED, 2)
    assert_colour(out[-80:], BLUE, 2)


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
