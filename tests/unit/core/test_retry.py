"""The one Retry-After reader and the backoff helpers every client uses: bounded, never raising."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.retry import MAX_EXPONENT, exponential, jittered, parse_retry_after

NOW = 1_800_000_000.0
HIGHEST = 600.0


def read(value: str | bytes | None, *, fractional: bool = True) -> float | None:
    return parse_retry_after(value, now=NOW, highest_s=HIGHEST, fractional=fractional)


def http_date(offset_s: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + offset_s, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("0.5", 0.5),
        (b"12", 12.0),
        ("600", 600.0),
        ("601", HIGHEST),
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_delta_seconds_are_read_within_the_bounds(value: str | bytes | None, expected: float | None) -> None:
    assert read(value) == expected


def test_whole_seconds_only_where_the_protocol_allows_no_fraction() -> None:
    assert read("1.5", fractional=False) is None
    assert read("15", fractional=False) == 15.0


def test_http_dates_count_from_now() -> None:
    assert read(http_date(90)) == pytest.approx(90.0)
    assert read(http_date(-90)) == 0.0
    assert read("Wed, 21 Oct 2015 07:28:00") is None  # no zone: not an HTTP date


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4" * 400, HIGHEST),  # float("4" * 400) would be inf; int -> float would overflow
        ("9" * 5000, HIGHEST),  # beyond int()'s digit limit
        ("4" * 400 + ".5", HIGHEST),
        ("-3", 0.0),
        ("-" + "9" * 400, 0.0),
        ("-0.5", 0.0),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("-inf", None),
        ("1e400", None),
        ("1E3", None),
        ("0x10", None),
        ("+5", None),
        ("١٢", None),  # Arabic-Indic digits: not ASCII
        ("\uff11\uff12", None),  # full-width digits
        (b"\xff\xfe", None),  # not ASCII at all
        ("7\x00", None),
        ("Mon, 01 Jan 10000000000000000000 00:00:00 GMT", None),  # OverflowError inside the stdlib
        ("Mon, 01 Jan 99999 00:00:00 GMT", None),  # year out of range
        ("Mon, 01 Jan 2020 99:99:99 GMT", None),
        ("Fri, 31 Dec 9999 23:59:59 GMT", HIGHEST),  # far future
        ("Sat, 01 Jan 0001 00:00:00 GMT", 0.0),  # long past
        ("Fri, 31 Dec 9999 23:59:59 +1400", HIGHEST),
    ],
)
def test_hostile_values_clamp_or_are_unreadable_and_never_raise(
    value: str | bytes, expected: float | None
) -> None:
    assert read(value) == expected


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_value_is_none_or_within_the_bounds(value: str | bytes) -> None:
    seconds = parse_retry_after(value, now=NOW, lowest_s=1.0, highest_s=HIGHEST)
    assert seconds is None or 1.0 <= seconds <= HIGHEST


@given(st.integers(min_value=-(10**6), max_value=10**6), st.floats(0.5, 5.0))
def test_any_number_of_seconds_lands_within_the_bounds(seconds: int, lowest: float) -> None:
    value = parse_retry_after(str(seconds), now=NOW, lowest_s=lowest, highest_s=HIGHEST)
    assert value is not None
    assert lowest <= value <= HIGHEST
    if lowest <= seconds <= HIGHEST:
        assert value == seconds


def test_exponential_doubles_from_its_base_up_to_its_cap() -> None:
    assert [exponential(n, base_s=0.2, cap_s=5.0) for n in range(1, 7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    assert exponential(0, base_s=0.2, cap_s=5.0) == 0.2


@given(st.integers(min_value=-5, max_value=10**9), st.floats(1.01, 10.0))
def test_exponential_never_overflows_however_long_the_failures_last(attempt: int, factor: float) -> None:
    wait = exponential(attempt, base_s=5.0, cap_s=60.0, factor=factor)
    assert 5.0 <= wait <= 60.0


def test_the_exponent_is_capped_below_float_overflow() -> None:
    assert float("inf") > 10.0**MAX_EXPONENT


@given(st.floats(0.0, 1.0), st.floats(0.0, 0.5))
def test_jitter_stays_within_its_spread(draw: float, spread: float) -> None:
    assert 100.0 * (1 - spread) - 1e-9 <= jittered(100.0, draw, spread) <= 100.0 * (1 + spread) + 1e-9
