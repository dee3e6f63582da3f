"""The label map: a CSV of `id,name` rows, mapped by id (the first row is 964, not 0)."""

from __future__ import annotations

import csv
import io

from consumer.model.errors import ModelError


def parse_labels(data: bytes) -> list[str]:
    """Labels indexed by class id; ids must cover 0..N-1 exactly once."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelError(f"label map is not UTF-8: {exc}") from None
    reader = csv.reader(io.StringIO(text))
    rows = [row for row in reader if row and any(cell.strip() for cell in row)]
    if rows and not rows[0][0].strip().lstrip("-").isdigit():
        rows = rows[1:]  # header
    by_id: dict[int, str] = {}
    for line, row in enumerate(rows, start=2):
        if len(row) < 2:
            raise ModelError(f"label map line {line}: expected 'id,name', got {row!r}")
        try:
            label_id = int(row[0])
        except ValueError:
            raise ModelError(f"label map line {line}: id {row[0]!r} is not an integer") from None
        if label_id in by_id:
            raise ModelError(f"label map line {line}: duplicate id {label_id}")
        by_id[label_id] = ",".join(row[1:]).strip()
    if not by_id:
        raise ModelError("label map is empty")
    if set(by_id) != set(range(len(by_id))):
        raise ModelError(f"label map ids are not 0..{len(by_id) - 1}")
    return [by_id[i] for i in range(len(by_id))]


BACKGROUND_LABEL = "background"


def background_class(labels: list[str]) -> int | None:
    """The id of the label map's "no bird" class (`background` in the AIY map), if any."""
    found = [i for i, label in enumerate(labels) if label.strip().lower() == BACKGROUND_LABEL]
    return found[0] if len(found) == 1 else None
