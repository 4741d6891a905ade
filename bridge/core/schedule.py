"""When to poll an import next, and which requests one poll makes (pure).

Intervals (docs/design.md, "Polling"): the minimum while MPC's job is busy with a bulk or right
after a change, growing by :data:`BACKOFF_FACTOR` per quiet poll while bulks only wait, up to the
maximum; doubling per consecutive failure; ``Retry-After`` honoured up to a bound. Jitter only
ever lengthens an interval, so the floor MPC asks for always holds. A busy import's polls get
none (exactly the floor); a quiet import's get a little while still at the floor (every
millisecond there is detection delay for the pick-up it waits for) and more once it backs off,
so that many quiet imports do not stay in step.

An answered poll's interval runs from the moment its pacing request was sent (:func:`next_due`):
the time MPC took to answer and the bridge to write the result is part of the interval, not
added to it, so a busy import's requests are the floor apart, not the floor plus a round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from bridge.core.diff import LISTING_SUFFICES, NOT_FAILURES
from bridge.core.model import ACTIVE_STATUSES, Failure, WatchSnapshot, WatchSpec
from bridge.core.retry import exponential

BACKOFF_FACTOR: Final = 1.15
"""Growth of the interval per quiet poll while every open bulk is ``waiting``."""
QUIET_POLLS_AT_FLOOR: Final = 120
"""Quiet polls still at the floor before backing off (ten minutes at MPC's 5 s): a job queue
usually picks a waiting bulk up within minutes, and a pick-up seen during the back-off is seen
late."""
FAILURE_FACTOR: Final = 2.0
"""Growth of the interval per consecutive failed poll."""
JITTER: Final = 0.1
"""Up to +10 % on a backed-off or failed poll's interval, so pollers that started together drift
apart."""
FLOOR_JITTER: Final = 0.02
"""Up to +2 % on a quiet poll still at the floor (at most 100 ms at 5 s): enough to drift apart,
little enough that a pick-up is seen about as soon as a poller at the bare floor would see it."""


class PollState(msgspec.Struct, kw_only=True, array_like=True):
    """Per import, across polls (stored with the tracker)."""

    failures: int = 0
    quiet: int = 0
    """Consecutive successful polls that changed nothing while no bulk was busy."""
    last_polled: float = 0.0


class Intervals(msgspec.Struct, frozen=True, kw_only=True):
    min_s: float
    max_s: float
    retry_after_max_s: float


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """The requests of one poll."""

    use_import: bool
    """Ask the import endpoint (all bulks' statuses in one request)."""
    bulks: tuple[int, ...]
    """Bulks to ask directly (when ``use_import`` is false)."""


def plan_requests(watches: Iterable[WatchSpec], snapshots: Mapping[str, WatchSnapshot]) -> Plan:
    """A whole-import watch polls the import endpoint; named bulks are asked one by one, and
    only while some watch still waits for news of them."""
    wanted: set[int] = set()
    for watch in watches:
        if watch.bulk_ids is None:
            return Plan(use_import=True, bulks=())
        snap = snapshots.get(watch.id)
        for bulk_id in watch.bulk_ids:
            known = snap.bulks.get(bulk_id) if snap is not None else None
            if known is None or not known.done:
                wanted.add(bulk_id)
    return Plan(use_import=False, bulks=tuple(sorted(wanted)))


def bulks_to_fetch(
    listing: Mapping[int, str], watches: Iterable[WatchSpec], snapshots: Mapping[str, WatchSnapshot]
) -> list[int]:
    """After an import poll: the listed bulks whose details some watch needs — new to it, with
    a status it has not seen (unless the listing alone announces it), or busy while it wants
    progress."""
    needed: set[int] = set()
    for watch in watches:
        snap = snapshots.get(watch.id)
        scope = listing.keys() if watch.bulk_ids is None else (b for b in watch.bulk_ids if b in listing)
        for bulk_id in scope:
            known = snap.bulks.get(bulk_id) if snap is not None else None
            status = listing[bulk_id]
            changed = known is not None and known.status != status
            announced_by_listing = (
                changed and known is not None and known.status is not None and (status in LISTING_SUFFICES)
            )
            if (
                known is None
                or known.missing
                or (changed and not announced_by_listing)
                or (watch.notify_progress and status in ACTIVE_STATUSES)
            ):
                needed.add(bulk_id)
    return sorted(needed)


def next_delay(
    state: PollState,
    *,
    failure: Failure | None,
    changed: bool,
    busy: bool,
    intervals: Intervals,
    jitter: float,
) -> tuple[float, PollState]:
    """Seconds until the next poll, and the poll state to keep. ``jitter`` is drawn in [0, 1)."""
    if failure is not None and failure.kind in NOT_FAILURES:
        # Rate-limited by MPC, or held back by the club's own budget: due again when asked.
        wait = failure.retry_after if failure.retry_after is not None else intervals.min_s * FAILURE_FACTOR
        delay = max(min(wait, intervals.retry_after_max_s), intervals.min_s)
        return delay, state  # Retry-After is exact: no jitter, no failure counted
    if failure is not None:
        failures = state.failures + 1
        delay = exponential(
            failures + 1, base_s=intervals.min_s, cap_s=intervals.max_s, factor=FAILURE_FACTOR
        )
        if failure.retry_after is not None:
            delay = max(delay, min(failure.retry_after, intervals.retry_after_max_s))
        new = msgspec.structs.replace(state, failures=failures)
    elif changed or busy:
        # Exactly the floor: every extra millisecond here is detection delay. Imports stay out of
        # step with each other by the phase they started at, not by stretching busy intervals.
        return intervals.min_s, msgspec.structs.replace(state, failures=0, quiet=0)
    else:
        quiet = state.quiet + 1
        growth = max(0, quiet - QUIET_POLLS_AT_FLOOR)
        delay = exponential(growth + 1, base_s=intervals.min_s, cap_s=intervals.max_s, factor=BACKOFF_FACTOR)
        new = msgspec.structs.replace(state, failures=0, quiet=quiet)
        if not growth:
            return delay * (1.0 + FLOOR_JITTER * jitter), new
    return delay * (1.0 + JITTER * jitter), new


def next_due(
    state: PollState,
    *,
    failure: Failure | None,
    changed: bool,
    busy: bool,
    intervals: Intervals,
    jitter: float,
    now: float,
    sent_at: float | None,
) -> tuple[float, PollState]:
    """When the import is due again (epoch s), and the poll state to keep.

    ``sent_at`` is when the request that paces the import's polls went to MPC (``None``: none
    did), ``now`` when the poll ended. A poll that got its answer is due :func:`next_delay`
    after ``sent_at``: the next such request goes out at least the floor after this one, and
    exactly the floor after it while the import is busy, however long MPC took to answer. A
    failure's backoff, a ``Retry-After`` and a poll held back by the club's budget count from
    ``now`` (the answer, or the refusal, came then), and never from before ``sent_at``.
    """
    delay, new = next_delay(
        state, failure=failure, changed=changed, busy=busy, intervals=intervals, jitter=jitter
    )
    if sent_at is None:
        return now + delay, new
    if failure is None:
        return sent_at + delay, new
    return max(now, sent_at) + delay, new
