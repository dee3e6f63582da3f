"""Error codes carried by error results: part of the public contract."""

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why an image produced no prediction."""

    INVALID_EVENT = "invalid_event"
    BLOCKED_URL = "blocked_url"
    FETCH_FAILED = "fetch_failed"
    HTTP_STATUS = "http_status"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    NOT_AN_IMAGE = "not_an_image"
    DECODE_FAILED = "decode_failed"
    INTERNAL = "internal"
