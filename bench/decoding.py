"""Decoding variants measured side by side: the service's, and the same without `draft()`."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from consumer.images.decode import decode_image, sniff_format, to_rgb
from consumer.model_input import INPUT_SIZE

Decode = Callable[[bytes], NDArray[np.uint8]]
MAX_PIXELS = 100_000_000


def decode_with_draft(data: bytes) -> NDArray[np.uint8]:
    """The service's decoder (`consumer.images.decode.decode_image`)."""
    return decode_image(data, MAX_PIXELS)


def decode_without_draft(data: bytes, size: int = INPUT_SIZE) -> NDArray[np.uint8]:
    """The service's decoder minus the reduced-scale JPEG decode: every pixel is decoded."""
    fmt = sniff_format(data)
    img: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
    img = ImageOps.exif_transpose(img) or img
    resized = to_rgb(img).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


DECODERS: dict[str, Decode] = {"draft": decode_with_draft, "full": decode_without_draft}
