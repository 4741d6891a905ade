"""Waiting before trying again: exponential backoff, jitter, and the one ``Retry-After`` reader.

Every client of the bridge (MPC, Slack, webhook receivers, Redis) uses these, so that a backoff
never overflows and a hostile or broken ``Retry-After`` never raises: whatever a peer sends,
the answer is a number within the caller's bounds, or ``None`` when there was nothing usable.
Pure functions; the random draw and the clock are passed in.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

MAX_EXPONENT: Final = 64
"""Backoff exponents stop growing here: ``factor ** n`` stays a finite float for any attempt
count (a cap is always far below it), however long a dependency has been failing."""
MAX_SECONDS_DIGITS: Final = 15
"""A ``Retry-After`` of more digits than this is absurd (over 30 million years): it is read as
"as long as you allow", without turning 400 digits into a float (which would overflow)."""

_SECONDS: Final = re.compile(r"[0-9]+")
_FRACTIONAL_SECONDS: Final = re.compile(r"[0-9]+(\.[0-9]+)?")
_NEGATIVE: Final = re.compile(r"-[0-9]+(\.[0-9]+)?")


def exponential(attempt: int, *, base_s: float, cap_s: float, factor: float = 2.0) -> float:
    """The wait before retry ``attempt`` (1-based): ``base_s``, then times ``factor`` per attempt,
    at most ``cap_s``."""
    exponent = min(max(0, attempt - 1), MAX_EXPONENT)
    return float(min(cap_s, base_s * factor**exponent))


def jittered(wait_s: float, draw: float, spread: float) -> float:
    """``wait_s`` scaled by a factor in ``[1 - spread, 1 + spread]`` chosen by ``draw`` in [0, 1):
    retries of many calls that failed together spread out instead of coming back as one burst."""
    draw = min(max(draw, 0.0), 1.0)
    return wait_s * (1.0 - spread + 2.0 * spread * draw)


def parse_retry_after(
    value: str | bytes | None,
    *,
    now: float,
    lowest_s: float = 0.0,
    highest_s: float,
    fractional: bool = True,
) -> float | None:
    """Seconds from ``now`` that a ``Retry-After`` value asks to wait, within
    ``[lowest_s, highest_s]``; ``None`` when it is absent or unreadable.

    Takes delta-seconds (with a fraction when ``fractional``: MPC and Slack; RFC 9110 allows
    whole seconds only, which is what webhook receivers get) and HTTP dates (GMT). A negative
    number or a date in the past is ``lowest_s``; an absurd number or a date far ahead (or past
    the calendar's end) is ``highest_s``. NaN, infinities, exponents, other digits and other
    text are unreadable. Never raises.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    text = value.strip()
    if not text or not text.isascii():
        return None
    if (_FRACTIONAL_SECONDS if fractional else _SECONDS).fullmatch(text):
        whole = text.partition(".")[0]
        if len(whole) > MAX_SECONDS_DIGITS:
            return highest_s
        return _within(float(text), lowest_s, highest_s)
    if _NEGATIVE.fullmatch(text):
        return lowest_s
    return _http_date(text, now, lowest_s, highest_s)


def _http_date(text: str, now: float, lowest_s: float, highest_s: float) -> float | None:
    try:
        when: datetime = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        # parsedate_to_datetime raises ValueError for a year or day out of range as well.
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; without a zone it is not one
        return None
    try:
        seconds = when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return highest_s
    return _within(seconds, lowest_s, highest_s)


def _within(seconds: float, lowest_s: float, highest_s: float) -> float | None:
    if math.isnan(seconds):
        return None
    return min(max(seconds, lowest_s), highest_s)
