"""From a decoded Pillow image of any mode and size to a small RGB image, without full-size copies.

A large image is converted and shrunk band by band (`Image.reduce` by whole factors, as
Pillow's `reducing_gap` does), so besides the decoded image itself only one band and the
reduced result are ever held. The final resize to the model's input happens on that result.
"""

from __future__ import annotations

from PIL import Image

# Shrink by whole factors while at least this many times the target side remains; the final
# bilinear resize does the rest (Pillow's `reducing_gap`: 2 is close to a direct resize).
REDUCING_GAP = 2.0
# Bytes of RGB pixels converted at once for large images.
BAND_BYTES = 8 * 2**20
_RGB_BYTES = 4  # Pillow stores RGB with a padding byte

# EXIF orientation -> the transpose that undoes it (as ImageOps.exif_transpose applies them).
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel Pillow uses to hold an image of `mode` in memory."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def reduction(size: tuple[int, int], target: int) -> tuple[int, int]:
    """Whole factors (x, y) to shrink an image of `size` by before resizing it to `target`."""
    return tuple(max(1, int(side / (target * REDUCING_GAP))) for side in size)  # type: ignore[return-value]


def working_bytes(size: tuple[int, int], mode: str, target: int) -> int:
    """Memory the conversion needs besides the decoded image: the bands and the result."""
    width, height = size
    fx, fy = reduction(size, target)
    reduced = -(-width // fx) * -(-height // fy) * _RGB_BYTES
    # A band is copied, converted (up to three RGBA-sized steps for transparency) and reduced.
    band = min(width * height, BAND_BYTES // _RGB_BYTES) * (pixel_bytes(mode) + 3 * _RGB_BYTES)
    return band + 2 * reduced


def shrink_to_rgb(img: Image.Image, target: int) -> Image.Image:
    """`img` (loaded) as RGB, shrunk by whole factors towards `target` band by band."""
    scale = _integer_scale(img)
    fx, fy = reduction(img.size, target)
    if fx == fy == 1:
        return to_rgb(img, scale)
    width, height = img.size
    rows = max(fy, BAND_BYTES // (width * _RGB_BYTES) // fy * fy)
    out = Image.new("RGB", (-(-width // fx), -(-height // fy)))
    for top in range(0, height, rows):
        band = img.crop((0, top, width, min(height, top + rows)))
        # Bands start at multiples of fy, so each reduced band lands exactly in its rows.
        out.paste(to_rgb(band, scale).reduce((fx, fy)), (0, top // fy))
    return out


def orient(img: Image.Image, source: Image.Image) -> Image.Image:
    """`img` turned upright as the EXIF (or XMP) orientation of `source` says."""
    method = _ORIENTATIONS.get(source.getexif().get(_EXIF_ORIENTATION, 1))
    return img.transpose(method) if method is not None else img


def to_rgb(img: Image.Image, scale: float | None = None) -> Image.Image:
    """Any Pillow mode to RGB; transparent pixels become white, 16-bit is scaled to 8-bit.

    `scale` is the factor for integer modes (computed from `img` when None); band-wise callers
    pass the whole image's, so every band is scaled alike.
    """
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
        factor = _integer_scale(img) if scale is None else scale
        # point() refuses the byte-ordered I;16B/I;16L modes (big-endian TIFF), "I" takes all.
        img = img.convert("I").point(lambda v: v * factor).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        # Pillow converts premultiplied La only to LA, not straight to RGBA.
        rgba = (img.convert("LA") if img.mode == "La" else img).convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _integer_scale(img: Image.Image) -> float:
    """16-bit modes scale by 1/256; 32-bit integers only when their peak passes 255."""
    if img.mode.startswith("I;16"):
        return 1 / 256
    if img.mode == "I":
        extrema = img.getextrema()
        peak = float(extrema[1]) if isinstance(extrema[1], int | float) else 255.0
        return 1 / 256 if peak > 255 else 1
    return 1
