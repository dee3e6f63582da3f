"""The label map parser: rows mapped by id, whatever their order, and strict about the ids."""

from __future__ import annotations

import pytest

from consumer.model import ModelError
from consumer.model.labels import parse_labels
from consumer.testing.models import GREY_CLASS, NUM_CLASSES, make_labelmap_csv

# The first lines of the real AIY birds map: a header, then "background" under the last id.
REAL_LIKE = b"""id,name
3,background
0,Haemorhous cassinii
1,Aramus guarauna
2,Rupornis magnirostris
"""


def test_real_like_map_is_indexed_by_id_not_by_row() -> None:
    assert parse_labels(REAL_LIKE) == [
        "Haemorhous cassinii",
        "Aramus guarauna",
        "Rupornis magnirostris",
        "background",
    ]


def test_generated_full_size_map_puts_background_last() -> None:
    labels = parse_labels(make_labelmap_csv())

    assert len(labels) == NUM_CLASSES
    assert labels[GREY_CLASS] == "background"
    assert labels[0] == "Species 0"
    assert labels[963] == "Species 963"


def test_map_without_header() -> None:
    assert parse_labels(b"1,Parus major\n0,Pica pica\n") == ["Pica pica", "Parus major"]


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbfid,name\n0,Pica pica\n1,Parus major\n",
        b"\xef\xbb\xbf0,Pica pica\n1,Parus major\n",
    ],
    ids=["bom-and-header", "bom-no-header"],
)
def test_utf8_byte_order_mark_is_ignored(data: bytes) -> None:
    assert parse_labels(data) == ["Pica pica", "Parus major"]


def test_crlf_blank_lines_and_padding_are_tolerated() -> None:
    data = b"id,name\r\n\r\n 0 , Pica pica \r\n   \r\n1,Parus major\r\n\r\n"
    assert parse_labels(data) == ["Pica pica", "Parus major"]


def test_names_with_commas_quoted_or_not_stay_whole() -> None:
    data = b'id,name\n0,"Larus argentatus, adult"\n1,Parus major, juvenile\n2,"The ""odd"" one"\n'
    assert parse_labels(data) == [
        "Larus argentatus, adult",
        "Parus major, juvenile",
        'The "odd" one',
    ]


def test_non_ascii_names_survive() -> None:
    data = "0,Pic épeiche\n1,Mésange charbonnière\n2,アオジ\n".encode()
    assert parse_labels(data) == ["Pic épeiche", "Mésange charbonnière", "アオジ"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"0,a\n1,b\n1,c\n", "duplicate id 1"),
        (b"0,a\n2,c\n", "ids are not 0..1"),
        (b"1,a\n2,b\n3,c\n", "ids are not 0..2"),
        (b"-1,background\n0,a\n", "ids are not 0..1"),
        (b"0,a\nx,b\n", "'x' is not an integer"),
        (b"0,a\n1.0,b\n", "'1.0' is not an integer"),
        (b"0,a\n1\n", "expected 'id,name'"),
        (b"", "empty"),
        (b"id,name\n", "empty"),
        (b"\n \n\n", "empty"),
        ("0,Pic épeiche\n".encode("latin-1"), "not UTF-8"),
        ("0,a\n1,b\n".encode("utf-16"), "not UTF-8"),
    ],
    ids=[
        "duplicate",
        "gap",
        "starts-at-one",
        "negative",
        "word-id",
        "float-id",
        "missing-name",
        "empty",
        "header-only",
        "blank-lines-only",
        "latin-1",
        "utf-16",
    ],
)
def test_bad_maps_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ModelError, match="label map") as caught:
        parse_labels(data)

    assert reason in str(caught.value)
    assert caught.value.retryable is False
