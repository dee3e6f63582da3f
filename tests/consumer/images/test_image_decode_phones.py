"""Photos as phones save them: HEIC (HEIF, through pillow-heif) and AVIF (Pillow's own) decode
like any other photo, with their orientation honoured and the pixel and memory limits applied.
Every file is encoded here, at test time."""

from __future__ import annotations

import pytest
from PIL import Image

from consumer.images import ImageDecoder, ImageError
from consumer.images.decode import sniff_format
from schemas import ErrorCode
from tests.consumer.images.decode_support import (
    BLUE,
    GREEN,
    MAX_PIXELS,
    ORIENTATION_TAG,
    RED,
    assert_colour,
    decode,
    encode,
    expect_error,
    split_image,
)
from tests.consumer.images.test_image_geometry import side_colours

PHONE_FORMATS = ["HEIF", "AVIF"]


def oriented(fmt: str, orientation: int, size: tuple[int, int] = (320, 160)) -> bytes:
    """A landscape photo, left half red and right half blue, with an EXIF orientation."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return encode(split_image(size, RED, BLUE), fmt, quality=90, exif=exif.tobytes())


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_are_recognised_by_their_brands(fmt: str) -> None:
    data = encode(Image.new("RGB", (64, 48), GREEN), fmt)

    assert data[4:8] == b"ftyp"
    assert sniff_format(data) == fmt


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_decode_their_colours(fmt: str) -> None:
    out = decode(encode(Image.new("RGB", (300, 200), GREEN), fmt, quality=90))

    assert_colour(out, GREEN, 12)


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (1, {"left": RED, "right": BLUE}),
        (6, {"top": RED, "bottom": BLUE}),  # shown turned 90 degrees clockwise
        (8, {"top": BLUE, "bottom": RED}),
    ],
)
def test_phone_photos_are_turned_upright_once(
    fmt: str, orientation: int, expected: dict[str, tuple[int, int, int]]
) -> None:
    colours = side_colours(decode(oriented(fmt, orientation)))

    for side, colour in expected.items():
        assert colours[side] == colour, (side, colours)


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_the_pixel_limit_applies_before_decoding(fmt: str) -> None:
    data = encode(Image.new("RGB", (400, 300), RED), fmt)

    expect_error(data, ErrorCode.TOO_LARGE, max_pixels=100_000)


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_phone_formats_are_priced_with_their_decoder_copies(fmt: str) -> None:
    data = encode(Image.new("RGB", (1000, 1000), RED), fmt)

    opened = ImageDecoder(MAX_PIXELS).open(data)

    # Three copies of 4 bytes a pixel, plus the working bands: what the budget reserves.
    assert (opened.format, opened.width, opened.height) == (fmt, 1000, 1000)
    assert 12e6 <= opened.cost_bytes <= 30e6


def test_an_iso_media_file_of_another_brand_is_not_an_image() -> None:
    mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(32)

    expect_error(mp4, ErrorCode.NOT_AN_IMAGE)


def test_a_damaged_heic_fails_to_decode() -> None:
    data = encode(Image.new("RGB", (256, 256), RED), "HEIF")

    with pytest.raises(ImageError) as caught:
        decode(data[: len(data) // 2])

    assert caught.value.code in (ErrorCode.DECODE_FAILED, ErrorCode.NOT_AN_IMAGE)
