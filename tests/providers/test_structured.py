from __future__ import annotations

import pytest

from quotaflow.providers._structured import Item, parse_list


def test_draft_examples_parse() -> None:
    assert parse_list('"burst";q=100;w=60,"daily";q=1000;w=86400') == [
        Item("burst", {"q": 100, "w": 60}),
        Item("daily", {"q": 1000, "w": 86400}),
    ]
    [item] = parse_list('"peruser";q=65535;qu="content-bytes";w=10;pk=:sdfjLJUOUH==:') or []
    assert item.params["qu"] == "content-bytes"
    assert isinstance(item.params["pk"], bytes)


def test_every_bare_item_type_parses() -> None:
    [item] = parse_list('tok;i=-5;d=1.25;s="a\\"b";b=?0;f;t=*x/y') or []
    assert item.value == "tok"
    assert item.params == {"i": -5, "d": 1.25, "s": 'a"b', "b": False, "f": True, "t": "*x/y"}


def test_inner_lists_parse() -> None:
    [item] = parse_list('(1 "a");p=1') or []
    assert item.value == (Item(1, {}), Item("a", {}))


def test_an_empty_field_is_an_empty_list() -> None:
    assert parse_list("") == []


@pytest.mark.parametrize(
    "field",
    [
        '"a",',  # trailing comma
        "limit=100, remaining=50, reset=30",  # the pre-08 draft syntax
        '"a";Q=1',  # upper-case key
        '"a";q=1234567890123456',  # integer too long
        '"a";q=1.2345',  # too many fraction digits
        '"unterminated',
        '"bad\\escape"',
        ":not base64!:",
        "?2",
        '"a" "b"',
        "(1 2",
    ],
)
def test_malformed_fields_are_rejected_whole(field: str) -> None:
    assert parse_list(field) is None
