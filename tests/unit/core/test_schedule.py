"""Poll intervals and request planning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.model import BulkSnapshot, Failure, WatchSnapshot
from bridge.core.schedule import (
    BACKOFF_FACTOR,
    JITTER,
    QUIET_POLLS_AT_FLOOR,
    Intervals,
    PollState,
    bulks_to_fetch,
    next_delay,
    plan_requests,
)
from tests.builders import watch

INTERVALS = Intervals(min_s=5.0, max_s=60.0, retry_after_max_s=600.0)


def delay(
    state: PollState = PollState(),  # noqa: B008 - an immutable value
    *,
    failure: Failure | None = None,
    changed: bool = False,
    busy: bool = False,
    jitter: float = 0.0,
) -> tuple[float, PollState]:
    return next_delay(state, failure=failure, changed=changed, busy=busy, intervals=INTERVALS, jitter=jitter)


def test_busy_or_changed_imports_are_polled_at_the_minimum() -> None:
    assert delay(PollState(quiet=7), busy=True)[0] == 5.0
    assert delay(PollState(quiet=7), changed=True) == (5.0, PollState(quiet=0))


def test_quiet_waiting_imports_back_off_up_to_the_maximum() -> None:
    state = PollState()
    seen = []
    for _ in range(30):
        wait, state = delay(state)
        seen.append(wait)
    assert seen[:QUIET_POLLS_AT_FLOOR] == [5.0] * QUIET_POLLS_AT_FLOOR
    assert seen[QUIET_POLLS_AT_FLOOR] == pytest.approx(5.0 * BACKOFF_FACTOR)
    assert seen == sorted(seen) and seen[-1] == 60.0


def test_busy_polls_are_exactly_at_the_floor_whatever_the_jitter() -> None:
    assert delay(busy=True, jitter=0.99)[0] == 5.0
    assert delay(changed=True, jitter=0.99)[0] == 5.0


def test_failures_double_the_interval_and_retry_after_is_honoured() -> None:
    wait, state = delay(failure=Failure(kind="server_error"))
    assert (wait, state.failures) == (10.0, 1)
    wait, state = delay(state, failure=Failure(kind="server_error", retry_after=45))
    assert (wait, state.failures) == (45.0, 2)
    assert delay(state)[1].failures == 0


def test_rate_limits_wait_exactly_retry_after_within_bounds_and_are_not_failures() -> None:
    assert delay(failure=Failure(kind="rate_limited", retry_after=7)) == (7.0, PollState())
    assert delay(failure=Failure(kind="rate_limited", retry_after=1))[0] == 5.0
    assert delay(failure=Failure(kind="rate_limited", retry_after=10**9))[0] == 600.0


def test_a_poll_held_back_by_the_clubs_budget_is_due_when_the_budget_refills_not_counted() -> None:
    assert delay(failure=Failure(kind="throttled", retry_after=8)) == (8.0, PollState())
    assert delay(failure=Failure(kind="throttled", retry_after=0.2))[0] == 5.0  # never under the floor


@given(
    quiet=st.integers(0, 100),
    failures=st.integers(0, 30),
    jitter=st.floats(0, 0.999),
    changed=st.booleans(),
    busy=st.booleans(),
    kind=st.sampled_from([None, "server_error", "timeout", "rate_limited"]),
    retry_after=st.one_of(st.none(), st.floats(0, 10**6)),
)
def test_no_interval_is_ever_below_the_floor(
    quiet: int,
    failures: int,
    jitter: float,
    changed: bool,
    busy: bool,
    kind: str | None,
    retry_after: float | None,
) -> None:
    failure = Failure(kind=kind, retry_after=retry_after) if kind else None  # type: ignore[arg-type]
    wait, _ = delay(
        PollState(quiet=quiet, failures=failures), failure=failure, changed=changed, busy=busy, jitter=jitter
    )
    assert INTERVALS.min_s <= wait <= max(INTERVALS.max_s, INTERVALS.retry_after_max_s) * (1 + JITTER)


def test_a_whole_import_watch_polls_the_import_endpoint() -> None:
    plan = plan_requests([watch((11,)), watch(None, id="wch_2")], {})
    assert plan.use_import and plan.bulks == ()


def test_named_bulks_are_polled_until_every_watch_has_them_done() -> None:
    done = WatchSnapshot(bulks={11: BulkSnapshot(status="finished"), 12: BulkSnapshot(status="working")})
    first, second = watch((11, 12)), watch((11, 13), id="wch_2")
    plan = plan_requests([first, second], {first.id: done})
    assert not plan.use_import and plan.bulks == (11, 12, 13)
    plan = plan_requests([first], {first.id: done})
    assert plan.bulks == (12,)


def test_after_an_import_poll_only_changed_or_new_bulks_are_fetched() -> None:
    spec = watch()
    known = WatchSnapshot(bulks={11: BulkSnapshot(status="working"), 12: BulkSnapshot(status="waiting")})
    listing = {11: "working", 12: "finished", 13: "waiting"}
    assert bulks_to_fetch(listing, [spec], {spec.id: known}) == [12, 13]
    picked_up = {11: "working", 12: "working"}
    assert bulks_to_fetch(picked_up, [spec], {spec.id: known}) == []  # the listing says it all
    progress = watch(id="wch_p", notify_progress=True)
    assert bulks_to_fetch(listing, [progress], {progress.id: known}) == [11, 12, 13]
    named = watch((12, 99), id="wch_n")
    assert bulks_to_fetch(listing, [named], {named.id: known}) == [12]


def test_a_watch_failing_for_days_keeps_a_finite_interval() -> None:
    # 2.0 ** 1100 overflows a float: the failure count of an import failing every minute for a
    # day must not turn the next poll's delay into an OverflowError.
    wait, state = delay(PollState(failures=5000), failure=Failure(kind="server_error"))
    assert (wait, state.failures) == (60.0, 5001)
    wait, _ = delay(PollState(quiet=10**6))
    assert wait == 60.0
