"""The committed JSON Schema files match the models, and validate real payloads."""

from __future__ import annotations

import jsonschema
import orjson
import pytest
from pydantic import BaseModel

from schemas import ErrorCode, Prediction, PredictionResult
from schemas.jsonschema import SCHEMA_DIR, SCHEMA_FILES, main, render


@pytest.mark.parametrize(("name", "model"), sorted(SCHEMA_FILES.items()))
def test_committed_schema_is_up_to_date(name: str, model: type[BaseModel]) -> None:
    committed = (SCHEMA_DIR / name).read_bytes()
    assert committed == render(model), f"run `python -m schemas.jsonschema` to refresh {name}"


def test_generator_writes_every_file(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    written: dict[str, bytes] = {}
    monkeypatch.setattr(
        "pathlib.Path.write_bytes", lambda self, data: written.setdefault(self.name, data)
    )
    assert main() == 0
    assert set(written) == set(SCHEMA_FILES)


def _schema(name: str) -> dict[str, object]:
    loaded: dict[str, object] = orjson.loads((SCHEMA_DIR / name).read_bytes())
    return loaded


def test_schemas_accept_real_payloads_and_reject_bad_ones() -> None:
    event_schema = _schema("image_event.schema.json")
    jsonschema.validate({"id": "a", "url": "https://h/x.jpg"}, event_schema)
    for bad in (
        {"id": "a", "url": "file:///x"},
        {"url": "http://h/x"},
        {"id": "", "url": "http://h"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, event_schema)

    result_schema = _schema("prediction_result.schema.json")
    ok = PredictionResult.ok(
        "a", "http://h/x", [Prediction(label_id=1, label="b", score=0.9)] * 3, "m", {}
    )
    jsonschema.validate(orjson.loads(ok.to_json()), result_schema)
    failed = PredictionResult.failed("a", "x", ErrorCode.BLOCKED_URL, "no", "m")
    jsonschema.validate(orjson.loads(failed.to_json()), result_schema)
    bad_code = orjson.loads(failed.to_json())
    bad_code["error"]["code"] = "nope"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_code, result_schema)
