"""The poll concurrency controller (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.core.pacing import (
    DECREASE_FACTOR,
    INCREASE_STEP,
    LAG_TARGET_S,
    MIN_CONCURRENCY,
    START_CONCURRENCY,
    Pacing,
    initial_limit,
    next_limit,
)

PACING = Pacing(ceiling=200)
BUSY = 1.0
IDLE = 0.1


def test_starts_below_the_ceiling_and_never_above_it() -> None:
    assert initial_limit(PACING) == START_CONCURRENCY
    assert initial_limit(Pacing(ceiling=10)) == 10
    assert initial_limit(Pacing(ceiling=1)) == 1


def test_grows_while_polls_wait_for_a_slot_and_the_loop_is_prompt() -> None:
    assert next_limit(32, lag_s=0.0, cpu_share=BUSY, wanting=True, pacing=PACING) == 32 + INCREASE_STEP


def test_holds_when_nothing_waits() -> None:
    assert next_limit(32, lag_s=0.0, cpu_share=BUSY, wanting=False, pacing=PACING) == 32


def test_shrinks_when_the_loop_lags_because_the_process_is_busy() -> None:
    lagging = LAG_TARGET_S * 4
    assert next_limit(100, lag_s=lagging, cpu_share=BUSY, wanting=True, pacing=PACING) == int(
        100 * DECREASE_FACTOR
    )


def test_a_lag_that_is_not_its_own_doing_does_not_shrink_it() -> None:
    """The machine is busy, or the process was paused: fewer polls would not help."""
    lagging = LAG_TARGET_S * 4
    assert next_limit(100, lag_s=lagging, cpu_share=IDLE, wanting=True, pacing=PACING) == 100


def test_a_lagging_busy_loop_bottoms_out_at_the_floor() -> None:
    limit = 200
    for _ in range(50):
        limit = next_limit(limit, lag_s=1.0, cpu_share=BUSY, wanting=True, pacing=PACING)
    assert limit == MIN_CONCURRENCY


def test_a_prompt_loop_with_waiting_polls_reaches_the_ceiling() -> None:
    limit = initial_limit(PACING)
    for _ in range(200):
        limit = next_limit(limit, lag_s=0.0, cpu_share=BUSY, wanting=True, pacing=PACING)
    assert limit == PACING.ceiling


@given(
    ceiling=st.integers(1, 10_000),
    limit=st.integers(1, 10_000),
    lag=st.floats(-1.0, 10.0),
    cpu=st.floats(0.0, 2.0),
    wanting=st.booleans(),
)
def test_always_within_bounds(ceiling: int, limit: int, lag: float, cpu: float, wanting: bool) -> None:
    pacing = Pacing(ceiling=ceiling)
    limit = min(limit, ceiling)
    result = next_limit(limit, lag_s=lag, cpu_share=cpu, wanting=wanting, pacing=pacing)
    assert min(MIN_CONCURRENCY, ceiling) <= result <= ceiling
    if not wanting:
        assert result <= max(limit, min(MIN_CONCURRENCY, ceiling))
