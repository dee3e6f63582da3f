"""Generate the JSON Schema files committed beside the models (`python -m schemas.jsonschema`)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
from pydantic import BaseModel

from schemas.events import ImageEvent, PredictionResult

SCHEMA_DIR = Path(__file__).resolve().parent
SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "image_event.schema.json": ImageEvent,
    "prediction_result.schema.json": PredictionResult,
}


def render(model: type[BaseModel]) -> bytes:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(),
    }
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main() -> int:
    for name, model in SCHEMA_FILES.items():
        (SCHEMA_DIR / name).write_bytes(render(model))
        sys.stdout.write(f"wrote {SCHEMA_DIR / name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
