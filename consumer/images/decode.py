"""Decoding image bytes into the model's input: INPUT_SIZE x INPUT_SIZE RGB uint8
(`consumer.model_input`), full frame, no crop.

In two steps, so that a caller can admit the decode against a memory budget in between:
`ImageDecoder.open` reads only the header (format, size, mode) and estimates what decoding will
hold at its peak; `OpenedImage.decode` then decodes the pixels.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pillow_heif
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from consumer.images.convert import orient, pixel_bytes, shrink_to_rgb, to_rgb, working_bytes
from consumer.images.errors import ImageError
from consumer.model_input import INPUT_SIZE
from schemas import ErrorCode

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
_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "HEIF", "AVIF")
# ISO base media files (what phones save) say what they hold in their `ftyp` box's brands.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_OPENING = threading.Lock()
# Copies of the full decoded image a format's decoder holds at once: libwebp decodes into its
# own buffer, which Pillow then copies; libtiff may read some layouts into an RGBA buffer;
# libheif and libavif hold the YUV planes and an RGB conversion, which Pillow then copies.
_DECODER_COPIES = {"WEBP": 3, "TIFF": 2, "HEIF": 3, "AVIF": 3}

# HEIF (HEIC) through pillow-heif, whose plug-in applies the file's rotation and mirroring
# itself (and resets the EXIF orientation, so it is not applied twice); AVIF is Pillow's own.
pillow_heif.register_heif_opener()


def sniff_format(data: bytes) -> str:
    """The image format named by the first bytes, or `ImageError(not_an_image)`."""
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    brands = _ftyp_brands(data)
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    head = data[:16].lstrip()[:8]
    raise ImageError(ErrorCode.NOT_AN_IMAGE, f"content is not a supported image (starts {head!r})")


def _ftyp_brands(data: bytes) -> frozenset[bytes]:
    """The major and compatible brands of an ISO base media file's leading `ftyp` box."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return frozenset()
    end = min(int.from_bytes(data[:4], "big"), len(data))
    compatible = (data[i : i + 4] for i in range(16, end - 3, 4))
    return frozenset({data[8:12], *compatible})


@dataclass(frozen=True)
class OpenedImage:
    """An image whose header has been read and whose pixels have not been decoded yet."""

    image: Image.Image
    format: str
    width: int
    height: int
    # What decoding and converting it will hold at the peak, in bytes (an estimate).
    cost_bytes: int
    size: int = INPUT_SIZE

    def decode(self) -> NDArray[np.uint8]:
        """The `size`x`size`x3 uint8 RGB array; raises `ImageError`."""
        with _decode_errors():
            img = self.image
            img.load()
            small = orient(shrink_to_rgb(img, self.size), img)
            resized = small.resize((self.size, self.size), Image.Resampling.BILINEAR)
            return np.asarray(resized, dtype=np.uint8)


@dataclass(frozen=True)
class ImageDecoder:
    """Reads headers and estimates costs for images of at most `max_pixels` pixels."""

    max_pixels: int
    size: int = INPUT_SIZE

    def open(self, data: bytes) -> OpenedImage:
        """Read the header of `data`; nothing is decoded. Raises `ImageError`.

        JPEGs are set to decode at a reduced DCT scale (`draft`) when the photo is much larger
        than `size`, which makes 12 MP photos several times cheaper: the estimate is that of
        the reduced decode.
        """
        fmt = sniff_format(data)
        with _decode_errors(), _OPENING, warnings.catch_warnings():
            # We enforce our own pixel limit; Pillow's global one only warns. (The lock: the
            # warning filters are process-wide, and decode threads open images at once.)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = img.size
            if width * height > self.max_pixels:
                raise ImageError(
                    ErrorCode.TOO_LARGE,
                    f"{width}x{height} pixels exceeds the {self.max_pixels} limit",
                )
            if img.format == "JPEG":
                img.draft("RGB", (self.size, self.size))
            decoded = img.size[0] * img.size[1] * pixel_bytes(img.mode)
            cost = decoded * _DECODER_COPIES.get(fmt, 1) + working_bytes(
                img.size, img.mode, self.size
            )
            return OpenedImage(img, fmt, width, height, cost, self.size)


def decode_image(data: bytes, max_pixels: int, size: int = INPUT_SIZE) -> NDArray[np.uint8]:
    """Decode `data` into a `size`x`size`x3 uint8 RGB array (both steps, no budget).

    EXIF orientation is applied; transparency is composited on white. Raises `ImageError`.
    """
    return ImageDecoder(max_pixels, size).open(data).decode()


@contextmanager
def _decode_errors() -> Iterator[None]:
    """Pillow's failures as `ImageError`s with the contract's codes."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(ErrorCode.TOO_LARGE, str(exc)) from None
    except UnidentifiedImageError as exc:
        raise ImageError(ErrorCode.NOT_AN_IMAGE, str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise ImageError(ErrorCode.DECODE_FAILED, f"{type(exc).__name__}: {exc}") from None


__all__ = ["ImageDecoder", "OpenedImage", "decode_image", "sniff_format", "to_rgb"]
