"""Settings are declared once, in consumer/config.py: env.example and README's configuration
table must name every field with its default, and every field has a description."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from consumer.config import ENV_PREFIX, SECRETS_DIR_VARIABLE, Settings

REPO = Path(__file__).resolve().parents[2]
FIELDS = Settings.model_fields
# Read by load_settings itself, not a field: where secret files live.
NOT_FIELDS = {SECRETS_DIR_VARIABLE}
NONE = "\u2013"  # an en dash, as the table writes "none"


def variable(field: str) -> str:
    return ENV_PREFIX + field.upper()


VARIABLES = {variable(f): f for f in FIELDS}


def default_of(field: str) -> Any:
    return FIELDS[field].get_default(call_default_factory=False)


def parses_to_default(field: str, text: str) -> bool:
    """`text`, read as the variable's value, gives the field's default."""
    try:
        value = getattr(Settings(_env_file=None, **{field: text}), field)  # type: ignore[arg-type]
    except ValidationError:
        return False
    default = default_of(field)
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return bool(value == default)


def env_example() -> dict[str, str]:
    """Variable -> the value env.example shows (commented-out lines included)."""
    text = (REPO / "env.example").read_text()
    found = re.findall(r"^#?(BIRDWATCH_\w+)=(.*)$", text, re.MULTILINE)
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), "a variable is listed twice in env.example"
    return dict(found)


def expand(names: list[str]) -> list[str]:
    """README's shorthand: "`BIRDWATCH_INPUT_TOPIC` / `_RESULTS_TOPIC`" names
    BIRDWATCH_RESULTS_TOPIC (the suffix replaces as many trailing words as it has)."""
    first, out = names[0], [names[0]]
    for suffix in names[1:]:
        words = suffix.strip("_").split("_")
        out.append("_".join(first.split("_")[: -len(words)] + words))
    return out


def readme_table() -> dict[str, str]:
    """Variable -> the default cell of README's configuration table."""
    rows: dict[str, str] = {}
    for line in (REPO / "README.md").read_text().splitlines():
        if not line.startswith("| `BIRDWATCH_"):
            continue
        name_cell, default_cell = (c.strip() for c in line.strip("|").split("|")[:2])
        names = expand(re.findall(r"`(\w+)`", name_cell))
        defaults = [d.strip() for d in default_cell.split(" / ")]
        if len(defaults) == 1:
            defaults *= len(names)
        assert len(defaults) == len(names), f"README row {name_cell}: one default per name"
        for name, default in zip(names, defaults, strict=True):
            assert name not in rows, f"{name} twice in README's table"
            rows[name] = default
    return rows


def test_every_setting_has_a_description() -> None:
    missing = [f for f, info in FIELDS.items() if not (info.description or "").strip()]
    assert not missing, f"give these fields a Field(description=...): {missing}"


def test_env_example_lists_every_setting_with_its_default() -> None:
    shown = env_example()
    assert set(shown) - NOT_FIELDS == set(VARIABLES)
    for name, value in shown.items():
        if name in NOT_FIELDS:
            continue
        field = VARIABLES[name]
        if value == "":
            # Left empty: the default is None, or computed (and said in the comment above).
            assert default_of(field) is None or FIELDS[field].default_factory, name
        else:
            assert parses_to_default(field, value), f"env.example: {name}={value}"


def test_readme_table_lists_every_setting_with_its_default() -> None:
    rows = readme_table()
    assert set(rows) - NOT_FIELDS == set(VARIABLES)
    for name, cell in rows.items():
        if name in NOT_FIELDS:
            continue
        field = VARIABLES[name]
        default = default_of(field)
        literals = re.findall(r"`([^`]*)`", cell)
        if cell == NONE:
            assert default is None, f"README: {name} has a default ({default!r}), not {NONE}"
        elif FIELDS[field].default_factory:
            continue  # computed: said in words ("CPU count")
        elif cell == f"`{literals[0] if literals else ''}`":
            assert parses_to_default(field, literals[0]), f"README: {name} default {cell}"
        else:
            # Words for a long default (a URL): what is quoted must be part of it.
            assert isinstance(default, str), f"README: {name} needs its default as `{default}`"
            assert default.startswith("https://"), f"README: {name} default {cell}"
            assert all(lit in default for lit in literals), f"README: {name} default {cell}"


@pytest.mark.parametrize(
    ("names", "expanded"),
    [
        (["BIRDWATCH_A_B"], ["BIRDWATCH_A_B"]),
        (["BIRDWATCH_INPUT_TOPIC", "_DLQ_TOPIC"], ["BIRDWATCH_INPUT_TOPIC", "BIRDWATCH_DLQ_TOPIC"]),
        (
            ["BIRDWATCH_KAFKA_SASL_MECHANISM", "_USERNAME"],
            ["BIRDWATCH_KAFKA_SASL_MECHANISM", "BIRDWATCH_KAFKA_SASL_USERNAME"],
        ),
    ],
)
def test_readme_shorthand(names: list[str], expanded: list[str]) -> None:
    assert expand(names) == expanded
