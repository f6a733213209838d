"""The time formats of the providers' headers, checked against quotaflow's own parsers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quotaflow.core import NS_PER_SECOND
from quotaflow.emulator._rate_headers import round_thousands
from quotaflow.emulator._timefmt import go_duration, http_date, rfc3339
from quotaflow.providers import parse_duration, parse_http_date, parse_rfc3339

MS = 1_000_000


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ms"),  # rounded up to the millisecond
        (12 * MS, "12ms"),
        (999 * MS, "999ms"),
        (1_000 * MS, "1s"),
        (1_146 * MS, "1.146s"),
        (7_660 * MS, "7.66s"),
        (360 * NS_PER_SECOND, "6m0s"),
        (179_560 * MS, "2m59.56s"),
        (3_600 * NS_PER_SECOND, "1h0m0s"),
        (86_400 * NS_PER_SECOND + 1, "24h0m0.001s"),
    ],
)
def test_go_durations_read_back_exactly(ns: int, text: str) -> None:
    assert go_duration(ns) == text
    assert parse_duration(text) == pytest.approx(-(-ns // MS) / 1_000)


def test_rfc3339_rounds_up_to_the_second_and_http_date_down() -> None:
    instant = 1_767_225_600 * NS_PER_SECOND + 1
    assert rfc3339(instant) == "2026-01-01T00:00:01Z"
    assert parse_rfc3339(rfc3339(instant)) == datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert http_date(instant) == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert parse_http_date(http_date(instant)) == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "rounded"), [(0, 0), (499, 0), (500, 1_000), (29_992, 30_000), (78_400, 78_000)]
)
def test_anthropic_rounds_remaining_tokens_to_the_nearest_thousand(
    value: int, rounded: int
) -> None:
    assert round_thousands(value) == rounded
