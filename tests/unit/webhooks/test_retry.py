"""The retry schedule: jitter bounds, Retry-After clamping, giving up, the 5-day auto-disable."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.webhooks.retry import (
    RETRY_AFTER_MAX_S,
    RetryPolicy,
    honour_retry_after,
    read_retry_after,
)

POLICY = RetryPolicy()
HOUR = 3600.0
draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def test_the_default_schedule_is_the_specs() -> None:
    assert POLICY.schedule_s == (5.0, 300.0, 1800.0, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR)
    assert POLICY.max_attempts == 8
    assert POLICY.disable_after_s == 5 * 24 * HOUR


@given(attempts=st.integers(min_value=1, max_value=7), draw=draws)
def test_every_wait_is_the_scheduled_one_within_20_percent(attempts: int, draw: float) -> None:
    nominal = POLICY.schedule_s[attempts - 1]
    wait = POLICY.scheduled_wait(attempts, draw)
    assert wait is not None
    assert 0.8 * nominal <= wait <= 1.2 * nominal


def test_after_the_last_scheduled_retry_there_is_none() -> None:
    assert POLICY.scheduled_wait(7, 0.5) == pytest.approx(10 * HOUR)
    assert POLICY.scheduled_wait(8, 0.5) is None
    assert POLICY.wait(8, 0.5, retry_after_s=1.0) is None
    assert POLICY.scheduled_wait(0, 0.5) is None


@given(
    scheduled=st.floats(min_value=1.0, max_value=12 * HOUR),
    asked=st.floats(min_value=0.0, max_value=100 * HOUR),
)
def test_retry_after_is_honoured_within_scheduled_and_twice_scheduled_and_10_hours(
    scheduled: float, asked: float
) -> None:
    wait = honour_retry_after(scheduled, asked)
    assert wait >= scheduled  # never sooner than the schedule
    assert wait <= max(scheduled, min(2 * scheduled, RETRY_AFTER_MAX_S))
    if scheduled <= asked <= min(2 * scheduled, RETRY_AFTER_MAX_S):
        assert wait == asked  # a reasonable wish is granted exactly


@pytest.mark.parametrize(
    ("scheduled", "asked", "expected"),
    [
        (300.0, 10.0, 300.0),  # asks for less: the schedule stands
        (300.0, 450.0, 450.0),  # within bounds: as asked
        (300.0, 86_400.0, 600.0),  # asks for a day: at most twice the schedule
        (7 * HOUR, 20 * HOUR, 10 * HOUR),  # twice would be 14 h: at most 10 h
        (11 * HOUR, 30 * HOUR, 11 * HOUR),  # the jittered 10 h step stays as scheduled
    ],
)
def test_retry_after_examples(scheduled: float, asked: float, expected: float) -> None:
    assert honour_retry_after(scheduled, asked) == pytest.approx(expected)


def test_the_policy_applies_retry_after_to_the_jittered_wait() -> None:
    assert POLICY.wait(2, 0.5, retry_after_s=450.0) == pytest.approx(450.0)
    assert POLICY.wait(2, 0.5, retry_after_s=None) == pytest.approx(300.0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", 0.0),  # negative: as soon as the schedule allows
        ("1.5", None),
        ("١٢", None),  # non-ASCII digits
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert read_retry_after(header, 1_800_000_000.0) == expected


def test_retry_after_http_dates() -> None:
    now = 1_800_000_000.0
    later = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    earlier = format_datetime(datetime.fromtimestamp(now - 90, UTC), usegmt=True)
    assert read_retry_after(later, now) == pytest.approx(90.0)
    assert read_retry_after(earlier, now) == 0.0
    assert read_retry_after("Wed, 21 Oct 2015 07:28:00", now) is None  # no zone: not an HTTP date


def test_a_subscription_failing_for_5_days_without_success_is_disabled() -> None:
    since = 1_800_000_000.0
    assert not POLICY.should_disable(None, since + 10 * 86_400)
    assert not POLICY.should_disable(since, since + 5 * 86_400 - 1)
    assert POLICY.should_disable(since, since + 5 * 86_400)
    compressed = RetryPolicy(schedule_s=(0.1,), disable_after_s=2.0)
    assert compressed.should_disable(since, since + 2.0)
