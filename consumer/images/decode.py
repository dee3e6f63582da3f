"""Decoding image bytes into the model's input: 224x224 RGB uint8, full frame, no crop."""

from __future__ import annotations

import io
import warnings

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from consumer.images.errors import ImageError
from schemas import ErrorCode

INPUT_SIZE = 224
# Formats we accept; anything else (SVG, HTML, PDF...) is refused before Pillow parses it.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")


def sniff_format(data: bytes) -> str:
    """The image format named by the first bytes, or `ImageError(not_an_image)`."""
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    head = data[:16].lstrip()[:8]
    raise ImageError(ErrorCode.NOT_AN_IMAGE, f"content is not a supported image (starts {head!r})")


def decode_image(data: bytes, max_pixels: int, size: int = INPUT_SIZE) -> NDArray[np.uint8]:
    """Decode `data` into a `size`x`size`x3 uint8 RGB array.

    JPEGs are decoded at a reduced DCT scale (`draft`) when the photo is much larger than
    `size`, which makes 12 MP photos several times cheaper; EXIF orientation is applied;
    transparency is composited on white. Raises `ImageError`.
    """
    fmt = sniff_format(data)
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; Pillow's global one only warns.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    ErrorCode.TOO_LARGE, f"{width}x{height} pixels exceeds the {max_pixels} limit"
                )
            if img.format == "JPEG":
                img.draft("RGB", (size, size))
            img = ImageOps.exif_transpose(img) or img
            rgb = to_rgb(img)
            resized = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(resized, dtype=np.uint8)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(ErrorCode.TOO_LARGE, str(exc)) from None
    except UnidentifiedImageError as exc:
        raise ImageError(ErrorCode.NOT_AN_IMAGE, str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise ImageError(ErrorCode.DECODE_FAILED, f"{type(exc).__name__}: {exc}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparent pixels become white, 16-bit is scaled to 8-bit."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
        scale = 1 / 256 if img.mode.startswith("I;16") or _peak(img) > 255 else 1
        # point() refuses the byte-ordered I;16B/I;16L modes (big-endian TIFF), "I" takes all.
        img = img.convert("I").point(lambda v: v * scale).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        # Pillow converts premultiplied La only to LA, not straight to RGBA.
        rgba = (img.convert("LA") if img.mode == "La" else img).convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _peak(img: Image.Image) -> float:
    extrema = img.getextrema()
    return float(extrema[1]) if isinstance(extrema[1], int | float) else 255.0
