"""The geometry of the model input: the full frame resized without cropping, and EXIF
orientation applied (after shrinking, for large images)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from tests.consumer.images.decode_support import (
    BLUE,
    GREEN,
    ORIENTATION_TAG,
    RED,
    Colour,
    assert_colour,
    decode,
    encode,
    split_image,
)


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


def test_a_large_image_is_oriented_after_shrinking() -> None:
    img = split_image((2400, 1600), RED, BLUE)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # rotated 90 degrees clockwise when shown
    out = decode(encode(img, "PNG", exif=exif.tobytes()))
    # The left half (red) ends up at the top once turned upright.
    assert_colour(out[:80], RED, 2)
    assert_colour(out[-80:], BLUE, 2)
