"""The event contracts: `ImageEvent` in, `PredictionResult` out (pydantic v2, orjson)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.errors import ErrorCode

MAX_ID_CHARS = 128
MAX_URL_CHARS = 2048
TOP_K = 3
# Absolute http(s) URLs only; spelled without inline flags so JSON Schema validators accept it.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+[^\s]*$"

EventId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]


class ImageEvent(BaseModel):
    """A request to classify the image at `url`; `id` is echoed in the result."""

    # Unknown fields are ignored so publishers can add fields without breaking consumers.
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: EventId
    url: Annotated[str, StringConstraints(max_length=MAX_URL_CHARS, pattern=URL_PATTERN)]
    submitted_at: datetime | None = None
    metadata: dict[str, Any] | None = None


class Prediction(BaseModel):
    model_config = ConfigDict(frozen=True)

    label_id: int
    label: str
    score: float


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    message: str


class PredictionResult(BaseModel):
    """The outcome for one event: the top-3 species, or an error. `background` is the score
    of the label map's "no bird" class, never among the predictions (absent when the label
    map has none)."""

    model_config = ConfigDict(frozen=True)

    id: str
    url: str
    status: Literal["ok", "error"]
    predictions: list[Prediction] = Field(default_factory=list)
    error: ErrorInfo | None = None
    model: str
    timings_ms: dict[str, float] = Field(default_factory=dict)
    processed_at: datetime
    background: Prediction | None = None

    @classmethod
    def ok(
        cls,
        event_id: str,
        url: str,
        predictions: list[Prediction],
        model: str,
        timings_ms: dict[str, float],
        background: Prediction | None = None,
    ) -> PredictionResult:
        return cls(
            id=event_id,
            url=url,
            status="ok",
            predictions=predictions,
            model=model,
            timings_ms=timings_ms,
            processed_at=datetime.now(UTC),
            background=background,
        )

    @classmethod
    def failed(
        cls,
        event_id: str,
        url: str,
        code: ErrorCode,
        message: str,
        model: str,
        timings_ms: dict[str, float] | None = None,
    ) -> PredictionResult:
        return cls(
            id=event_id,
            url=url,
            status="error",
            error=ErrorInfo(code=code, message=message),
            model=model,
            timings_ms=timings_ms or {},
            processed_at=datetime.now(UTC),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


class InvalidEventError(ValueError):
    """A record that is not a valid `ImageEvent`.

    `event_id` is set when the record still names an id, so an error result can answer it;
    when it is None the record can only go to the dead-letter topic.
    """

    def __init__(self, reason: str, event_id: str | None = None, url: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id
        self.url = url


def parse_event(raw: bytes | str) -> ImageEvent:
    """Parse one JSON record into an `ImageEvent` or raise `InvalidEventError`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEventError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return ImageEvent.model_validate(data)
    except ValidationError as exc:
        raise InvalidEventError(
            _summarize(exc),
            event_id=_usable_id(data.get("id")),
            url=_printable_url(data.get("url")),
        ) from None


def _usable_id(value: object) -> str | None:
    if isinstance(value, str) and 1 <= len(value) <= MAX_ID_CHARS:
        return value
    return None


def _printable_url(value: object) -> str:
    return value[:MAX_URL_CHARS] if isinstance(value, str) else ""


def _summarize(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "event"
        msg = err["msg"]
        if err["type"] == "string_pattern_mismatch" and where == "url":
            msg = "must be an absolute http:// or https:// URL"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)
