"""Fetching image bytes safely and decoding them into model input; knows nothing of models."""

from consumer.images.budget import DecodeBudget
from consumer.images.decode import ImageDecoder, OpenedImage, decode_image
from consumer.images.errors import ImageError
from consumer.images.fetch import FetchPolicy, ImageFetcher, make_image_session
from consumer.images.slots import HostSlots, host_key

__all__ = [
    "DecodeBudget",
    "FetchPolicy",
    "HostSlots",
    "ImageDecoder",
    "ImageError",
    "ImageFetcher",
    "OpenedImage",
    "decode_image",
    "host_key",
    "make_image_session",
]
