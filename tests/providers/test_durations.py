from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quotaflow.providers import (
    parse_delay,
    parse_duration,
    parse_http_date,
    parse_protobuf_duration,
    parse_rfc3339,
)
from quotaflow.providers._durations import parse_timestamp_or_delay

REF = datetime(2025, 2, 24, 22, 25, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("9ms", 0.009),
        ("2m59.56s", 179.56),
        ("7.66s", 7.66),
        ("1h2m3.5s", 3723.5),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        ("20", 20.0),  # Azure: plain seconds
        ("0.5", 0.5),
        ("3us", 3e-6),
        ("3\u00b5s", 3e-6),
        ("10ns", 1e-8),
        (" 1s ", 1.0),
    ],
)
def test_go_durations_and_plain_seconds_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "-1",
        "-1s",
        "abc",
        "m",
        "s",
        "1m1h",
        "1x",
        "1 s",
        "nan",
        "inf",
        "1e3",
        "9" * 70,
        "400d",
    ],
)
def test_garbage_durations_are_ignored(text: str) -> None:
    assert parse_duration(text) is None


def test_durations_longer_than_a_year_are_garbage() -> None:
    assert parse_duration("9000h") is None
    assert parse_duration("8000h") == 8000 * 3600


def test_non_strings_are_ignored() -> None:
    assert parse_duration(None) is None
    assert parse_duration(5) is None


def test_protobuf_durations_need_the_seconds_suffix() -> None:
    assert parse_protobuf_duration("59s") == 59.0
    assert parse_protobuf_duration("1.5s") == 1.5
    assert parse_protobuf_duration("3600s") == 3600.0
    assert parse_protobuf_duration("59") is None
    assert parse_protobuf_duration("-1s") is None
    assert parse_protobuf_duration("1m") is None


def test_http_dates_are_read_as_utc() -> None:
    assert parse_http_date("Fri, 31 Dec 1999 23:59:59 GMT") == datetime(
        1999, 12, 31, 23, 59, 59, tzinfo=UTC
    )
    assert parse_http_date("not a date") is None
    assert parse_http_date("") is None


def test_rfc3339_needs_an_offset() -> None:
    assert parse_rfc3339("2025-02-24T22:25:30Z") == datetime(2025, 2, 24, 22, 25, 30, tzinfo=UTC)
    assert parse_rfc3339("2025-02-24T23:25:30+01:00") == datetime(
        2025, 2, 24, 22, 25, 30, tzinfo=UTC
    )
    assert parse_rfc3339("2025-02-24T22:25:30") is None
    assert parse_rfc3339("2025-02-24") is None
    assert parse_rfc3339("yesterday") is None


def test_retry_after_reads_seconds_and_dates_against_the_reference() -> None:
    assert parse_delay("56", None) == 56.0
    assert parse_delay("1.5", None) == 1.5
    assert parse_delay("Mon, 24 Feb 2025 22:25:38 GMT", REF) == 10.0
    assert parse_delay("Mon, 24 Feb 2025 22:25:38 GMT", None) is None
    assert parse_delay("Mon, 24 Feb 2025 22:25:00 GMT", REF) == 0.0  # in the past: now
    assert parse_delay("-3", REF) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        (str(int(REF.timestamp()) + 12), 12.0),  # epoch seconds
        (str(int(REF.timestamp() * 1000) + 1500), 1.5),  # epoch milliseconds
        ("Mon, 24 Feb 2025 22:25:30 GMT", 2.0),
        ("2025-02-24T22:25:33Z", 5.0),
    ],
)
def test_conventional_reset_values_are_read_by_magnitude(text: str, seconds: float) -> None:
    assert parse_timestamp_or_delay(text, REF) == pytest.approx(seconds)


def test_epoch_resets_need_a_reference() -> None:
    assert parse_timestamp_or_delay(str(int(REF.timestamp())), None) is None
