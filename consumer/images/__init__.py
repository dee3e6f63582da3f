"""Fetching image bytes safely and decoding them into model input; knows nothing of models."""

from consumer.images.decode import INPUT_SIZE, decode_image
from consumer.images.errors import ImageError
from consumer.images.fetch import FetchPolicy, ImageFetcher, make_image_session

__all__ = [
    "INPUT_SIZE",
    "FetchPolicy",
    "ImageError",
    "ImageFetcher",
    "decode_image",
    "make_image_session",
]
