"""When to try a webhook again: the retry schedule, its jitter, ``Retry-After`` and auto-disable.

Pure functions of their inputs (the random draw and the clock are passed in). The promise:
retries after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, each with +-20 % jitter; a 429 or 503
``Retry-After`` is honoured within [scheduled wait, 2 x scheduled wait] and at most 10 h; a
subscription failing continuously for 5 days without a success is disabled.
"""

from __future__ import annotations

from typing import Final

import msgspec

from bridge.config import WEBHOOK_DISABLE_AFTER_S, WEBHOOK_RETRY_SCHEDULE_S
from bridge.core.retry import jittered, parse_retry_after

JITTER: Final = 0.2
"""Each wait is scaled by a factor in [1 - JITTER, 1 + JITTER]: retries of many deliveries that
failed together (a receiver outage) spread out instead of arriving as one burst."""
RETRY_AFTER_MAX_S: Final = 10 * 3600.0
"""A receiver's ``Retry-After`` is honoured up to 10 h."""
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
"""Answers whose ``Retry-After`` header is read (elsewhere it is ignored)."""


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    schedule_s: tuple[float, ...] = WEBHOOK_RETRY_SCHEDULE_S
    """The wait before retry N (N = 1..len): after the first attempt, after the second, ..."""
    disable_after_s: float = WEBHOOK_DISABLE_AFTER_S

    @property
    def max_attempts(self) -> int:
        """The first attempt and one per scheduled retry."""
        return 1 + len(self.schedule_s)

    def scheduled_wait(self, attempts_made: int, draw: float) -> float | None:
        """The jittered wait after ``attempts_made`` failed attempts; ``None`` once the schedule is
        used up. ``draw`` is uniform in [0, 1)."""
        if attempts_made < 1 or attempts_made > len(self.schedule_s):
            return None
        return jittered(self.schedule_s[attempts_made - 1], draw, JITTER)

    def wait(self, attempts_made: int, draw: float, retry_after_s: float | None) -> float | None:
        """The wait before the next attempt, ``Retry-After`` (if any) taken into account."""
        scheduled = self.scheduled_wait(attempts_made, draw)
        if scheduled is None:
            return None
        if retry_after_s is None:
            return scheduled
        return honour_retry_after(scheduled, retry_after_s)

    def should_disable(self, failing_since: float | None, now: float) -> bool:
        """Whether a subscription failing since ``failing_since`` (no success after) is disabled."""
        return failing_since is not None and now - failing_since >= self.disable_after_s


def honour_retry_after(scheduled_s: float, retry_after_s: float) -> float:
    """The receiver's wish, kept within [scheduled, 2 x scheduled] and at most 10 h, but never
    shorter than the schedule itself (a long scheduled wait stays as it is)."""
    wished = min(max(retry_after_s, 0.0), 2.0 * scheduled_s, RETRY_AFTER_MAX_S)
    return max(scheduled_s, wished)


def read_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a receiver's ``Retry-After`` asks for (whole seconds or an HTTP date, as RFC 9110
    allows), at most :data:`RETRY_AFTER_MAX_S`; ``None`` when absent or unreadable."""
    return parse_retry_after(value, now=now, highest_s=RETRY_AFTER_MAX_S, fractional=False)
