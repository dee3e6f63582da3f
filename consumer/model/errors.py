"""Errors of the model layer."""


class ModelError(Exception):
    """The model or its label map could not be fetched, unpacked or loaded.

    `retryable` is True for failures that may pass on their own (network, HTTP 5xx); `status`
    is the HTTP status that failed it, when one did.
    """

    def __init__(self, message: str, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
