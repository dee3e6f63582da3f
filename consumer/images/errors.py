"""The one exception type of the image layer: it carries the contract's error code."""

from __future__ import annotations

from schemas import ErrorCode


class ImageError(Exception):
    """Fetching or decoding one image failed for a reason the result reports as `code`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
