"""Small image payloads generated in memory for tests."""

from __future__ import annotations

import io

from PIL import Image

HTML_PAGE = b"<!doctype html><html><body>Not a bird</body></html>"


def solid_jpeg(color: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def solid_png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


RED, GREEN, BLUE, GREY = (230, 20, 20), (20, 230, 20), (20, 20, 230), (128, 128, 128)
