"""The console's pure helpers: the bulk bar and the poll rate."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from bridge.api.schemas import BulkOut
from bridge.console.pages import POLL_RATE_WINDOW_S, TotalRate, bulk_bar


def bulk(status: str | None) -> BulkOut:
    return BulkOut(
        bulk_id=1,
        status=status,
        request_number=1,
        members_in_payload_number=0,
        members_created_number=0,
        members_updated_number=0,
        members_with_validation_errors_number=0,
        retries=0,
        max_retries=5,
        outcome=None,
        missing=False,
        stalled=False,
        sequence=0,
        last_seen_at=None,
        last_changed_at=None,
    )


STATUSES = st.sampled_from(["waiting", "working", "finished", "failed", "waiting_for_retry", None, "new-one"])


@given(st.lists(STATUSES, max_size=300))
def test_the_bar_covers_every_bulk_once_and_fills_the_width(statuses: list[str | None]) -> None:
    bar = bulk_bar([bulk(s) for s in statuses])
    assert sum(s.count for s in bar) == len(statuses)
    if statuses:
        assert math.isclose(sum(s.width for s in bar), 100.0)
        assert math.isclose(bar[-1].start + bar[-1].width, 100.0)
        assert all(s.count > 0 and s.width > 0 for s in bar)
    else:
        assert bar == []


def test_the_bar_puts_finished_first_and_names_unseen_bulks() -> None:
    bar = bulk_bar([bulk(None), bulk("working"), bulk("finished"), bulk("finished")])
    assert [(s.status, s.count) for s in bar] == [("finished", 2), ("working", 1), ("unseen", 1)]
    assert bar[0].start == 0.0 and bar[1].start == 50.0


def test_poll_rate_needs_an_earlier_look_and_a_window() -> None:
    rate = TotalRate()
    assert rate.observe(1000.0, 50.0) == (None, 0.0)
    assert rate.observe(1001.0, 60.0) == (None, 0.0)  # too short a window to say
    assert rate.observe(1010.0, 150.0) == (10.0, 10.0)
    # Old samples leave the window; a counter that went back (a reset) gives no rate.
    assert rate.observe(1010.0 + POLL_RATE_WINDOW_S + 1, 10.0) == (None, 0.0)
