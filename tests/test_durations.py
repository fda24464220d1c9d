from __future__ import annotations

from datetime import timedelta

import pytest

from driftloop.core.durations import format_duration, parse_duration
from driftloop.errors import UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(hours=36)),
        ("1w", timedelta(days=7)),
        ("0", timedelta(0)),
        ("1.5h", timedelta(minutes=90)),
        (" 2D ", timedelta(days=2)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "24", "24x", "1d-2h", "d1", "1h 2"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "value", [timedelta(hours=36), timedelta(minutes=1), timedelta(0), timedelta(days=9, seconds=5)]
)
def test_format_round_trips(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value
