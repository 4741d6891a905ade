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
    next_due,
    plan_requests,
)
from tests.builders import watch

INTERVALS = Intervals(min_s=5.0, max_s=60.0, retry_after_max_s=600.0)
SENT = 1_800_000_000.0
"""An epoch second at which a poll's request went to MPC."""
EPSILON_S = 1e-6
"""Float rounding of epoch seconds (a few hundred nanoseconds at most)."""
FAILURE_KINDS = [None, "server_error", "timeout", "connection", "rate_limited", "throttled"]


def delay(
    state: PollState = PollState(),  # noqa: B008 - an immutable value
    *,
    failure: Failure | None = None,
    changed: bool = False,
    busy: bool = False,
    jitter: float = 0.0,
) -> tuple[float, PollState]:
    return next_delay(state, failure=failure, changed=changed, busy=busy, intervals=INTERVALS, jitter=jitter)


def due(
    state: PollState = PollState(),  # noqa: B008 - an immutable value
    *,
    sent_at: float | None = SENT,
    took_s: float = 1.3,
    failure: Failure | None = None,
    changed: bool = False,
    busy: bool = False,
    jitter: float = 0.0,
) -> tuple[float, PollState]:
    """``next_due`` for a poll whose request went out at ``sent_at`` and that ended ``took_s`` later."""
    return next_due(
        state,
        failure=failure,
        changed=changed,
        busy=busy,
        intervals=INTERVALS,
        jitter=jitter,
        now=(SENT if sent_at is None else sent_at) + took_s,
        sent_at=sent_at,
    )


def test_busy_or_changed_imports_are_polled_at_the_minimum() -> None:
    assert delay(PollState(quiet=7), busy=True)[0] == 5.0
    assert delay(PollState(quiet=7), changed=True) == (5.0, PollState(quiet=0))


def test_quiet_waiting_imports_back_off_up_to_the_maximum() -> None:
    state = PollState()
    seen = []
    for _ in range(QUIET_POLLS_AT_FLOOR + 30):
        wait, state = delay(state)
        seen.append(wait)
    assert seen[:QUIET_POLLS_AT_FLOOR] == [5.0] * QUIET_POLLS_AT_FLOOR
    assert seen[QUIET_POLLS_AT_FLOOR] == pytest.approx(5.0 * BACKOFF_FACTOR)
    assert seen == sorted(seen) and seen[-1] == 60.0


def test_busy_polls_are_exactly_at_the_floor_whatever_the_jitter() -> None:
    assert delay(busy=True, jitter=0.99)[0] == 5.0
    assert delay(changed=True, jitter=0.99)[0] == 5.0
    # Quiet, at the floor still: jittered a little, so that quiet imports drift out of step
    # without seeing a pick-up later than a poller at the bare floor would.
    assert delay(PollState(quiet=QUIET_POLLS_AT_FLOOR - 1), jitter=0.99)[0] == pytest.approx(5.0 * 1.0198)
    # Backed off: the full jitter.
    assert delay(PollState(quiet=QUIET_POLLS_AT_FLOOR), jitter=0.99)[0] == pytest.approx(
        5.0 * BACKOFF_FACTOR * 1.099
    )


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


def test_an_answered_busy_poll_is_due_the_floor_after_its_request_was_sent_not_after_it_ended() -> None:
    assert due(busy=True, took_s=1.3) == (SENT + 5.0, PollState())
    assert due(PollState(quiet=4), changed=True, took_s=4.9) == (SENT + 5.0, PollState())
    # A request slower than the floor: due at once, never before the answer was seen.
    assert due(busy=True, took_s=7.0)[0] == SENT + 5.0


def test_quiet_backoff_counts_from_the_request_too() -> None:
    state = PollState(quiet=QUIET_POLLS_AT_FLOOR + 3)
    wait, kept = delay(state, jitter=0.5)
    assert due(state, jitter=0.5, took_s=2.0) == (SENT + wait, kept)


def test_failures_retry_after_and_a_held_back_poll_count_from_when_the_poll_ended() -> None:
    ended = SENT + 2.0
    assert due(failure=Failure(kind="server_error"), took_s=2.0)[0] == ended + 10.0
    assert due(failure=Failure(kind="rate_limited", retry_after=7), took_s=2.0)[0] == ended + 7.0
    assert due(failure=Failure(kind="timeout"), took_s=2.0)[1].failures == 1
    # Held back by the club's budget: nothing was sent.
    assert due(failure=Failure(kind="throttled", retry_after=8), sent_at=None, took_s=0.0)[0] == SENT + 8.0


def test_a_poll_that_sent_nothing_counts_from_when_it_ended() -> None:
    assert due(sent_at=None, busy=True, took_s=0.5)[0] == SENT + 0.5 + 5.0


@given(
    quiet=st.integers(0, 100),
    failures=st.integers(0, 30),
    jitter=st.floats(0, 0.999),
    changed=st.booleans(),
    busy=st.booleans(),
    kind=st.sampled_from(FAILURE_KINDS),
    retry_after=st.one_of(st.none(), st.floats(0, 10**6)),
    took_s=st.floats(0, 120),
    sent=st.booleans(),
)
def test_the_next_poll_is_never_due_within_the_floor_of_the_last_request_nor_of_the_poll_end(
    quiet: int,
    failures: int,
    jitter: float,
    changed: bool,
    busy: bool,
    kind: str | None,
    retry_after: float | None,
    took_s: float,
    sent: bool,
) -> None:
    failure = Failure(kind=kind, retry_after=retry_after) if kind else None  # type: ignore[arg-type]
    at, _ = due(
        PollState(quiet=quiet, failures=failures),
        sent_at=SENT if sent else None,
        took_s=took_s,
        failure=failure,
        changed=changed,
        busy=busy,
        jitter=jitter,
    )
    assert at >= SENT + INTERVALS.min_s
    if failure is not None or not sent:
        assert at >= SENT + took_s + INTERVALS.min_s  # a backoff or a pause starts when it is known


@given(
    took=st.lists(st.floats(0.0, 12.0), min_size=2, max_size=40),
    start_lag=st.lists(st.floats(0.0, 0.05), min_size=40, max_size=40),
)
def test_a_busy_imports_requests_are_the_floor_apart_plus_only_the_lag_of_starting_a_poll(
    took: list[float], start_lag: list[float]
) -> None:
    """Polls one after another, as a worker runs them: claimed once due (and once the previous
    poll committed: it holds the lease), the request sent ``start_lag`` after the claim, the poll
    ending ``took`` after its request. Consecutive requests are never closer than the floor, and
    a poll that ended within the floor adds nothing to it but the lag of starting the next one."""
    sent: list[float] = []
    state, at, ended = PollState(), SENT, SENT
    for took_s, lag_s in zip(took, start_lag, strict=False):
        send = max(at, ended) + lag_s
        sent.append(send)
        ended = send + took_s
        at, state = next_due(
            state,
            failure=None,
            changed=False,
            busy=True,
            intervals=INTERVALS,
            jitter=0.9,
            now=ended,
            sent_at=send,
        )
    for n in range(1, len(sent)):
        gap = sent[n] - sent[n - 1]
        assert gap >= INTERVALS.min_s - EPSILON_S
        assert gap <= max(INTERVALS.min_s, took[n - 1]) + start_lag[n] + EPSILON_S
        if took[n - 1] <= INTERVALS.min_s:
            assert abs(gap - (INTERVALS.min_s + start_lag[n])) <= EPSILON_S
