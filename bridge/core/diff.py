"""The state-diff engine: (previous snapshot, new observation, clock) -> (new snapshot, events).

A pure function of its inputs: no I/O, no clock of its own, no randomness, and it never mutates
what it is given. Replaying an observation is a no-op, and every event id is derived from
(watch, bulk, sequence, type), so a re-poll, a retried job or a second worker computes the same
ids for the same change and the store's compare-and-set keeps exactly one of them.

Rules (the event table in docs/design.md):
- a status the bulk reached is announced once, with ``previous_status``; steps not seen between
  two polls are not invented;
- a new retry while the bulk stays ``waiting_for_retry`` (``retries`` grew) is a new ``bulk.retrying``;
- ``members_errors`` going empty (MPC deletes personal data after 24 h) is not a change;
- a failed poll changes nothing but the failure count; ``watch.upstream_failing`` after
  ``failing_after`` of them in a row, ``watch.upstream_recovered`` at the next success;
  401/403 end the watch in ``error`` at once; a club token the bridge cannot decrypt announces
  ``watch.upstream_failing`` at once but keeps the watch (it recovers once the token is readable);
  a poll the club's request budget held back (``throttled``) or MPC rate-limited counts nothing;
- ``import.completed`` once, when every bulk of the watch is terminal (or gone); a watch that
  ended produces nothing more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import msgspec
from msgspec import UNSET

from bridge.core import member_errors
from bridge.core.model import (
    MAX_RETRIES,
    STATUS_EVENT,
    BulkGone,
    BulkListed,
    BulkObservation,
    BulkSeen,
    BulkSnapshot,
    BulkView,
    Event,
    EventData,
    EventType,
    Failure,
    ImportTotals,
    MpcBulk,
    Observation,
    Outcome,
    WatchSnapshot,
    WatchSpec,
)

EVENT_ID_PREFIX: Final = "evt_"
LISTING_SUFFICES: Final = frozenset({"working"})
"""Statuses an import listing announces on its own: ``bulk.started`` carries nothing the listing
lacks (counts and retries do not move when a job picks a bulk up), so the bulk is not fetched."""
EVENT_ID_HEX_CHARS: Final = 32
NO_BULK: Final = "-"


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """The configurable part of the rules."""

    failing_after: int = 5
    """Consecutive failed polls before ``watch.upstream_failing``."""


DEFAULT_RULES: Final = Rules()


class Diff(NamedTuple):
    snapshot: WatchSnapshot
    events: list[Event]


def event_id(watch_id: str, bulk_id: int | None, sequence: int, event_type: str) -> str:
    """Deterministic: the same change of the same watch always gets the same id."""
    key = f"{watch_id}\x1f{NO_BULK if bulk_id is None else bulk_id}\x1f{sequence}\x1f{event_type}"
    return EVENT_ID_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:EVENT_ID_HEX_CHARS]


def events_so_far(snap: WatchSnapshot) -> int:
    """How many events the watch has had: the position of its last one.

    Every event adds one to exactly one counter, the watch's ``seq`` or its bulk's, so their sum
    counts the watch's events. Derived this way, positions need nothing stored beside the
    snapshot, and a watch created before positions existed continues from its true count.
    """
    return snap.seq + sum(bulk.seq for bulk in snap.bulks.values())


def iso_timestamp(epoch_s: float) -> str:
    """``2026-11-26T10:00:00.123Z``."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def outcome_of(created: int, updated: int, invalid: int, errors_digest: str) -> Outcome:
    """How a finished bulk went: ``finished`` alone does not mean members were imported."""
    if created + updated == 0:
        return "nothing_imported"
    if invalid > 0 or errors_digest:
        return "with_errors"
    return "clean"


def bulk_outcome(snap: BulkSnapshot) -> str:
    """A done bulk's outcome for ``import.completed``: an :data:`Outcome`, ``failed`` or ``missing``."""
    if snap.missing:
        return "missing"
    if snap.status == "failed":
        return "failed"
    return outcome_of(snap.created, snap.updated, snap.invalid, snap.errors_digest)


class _Emitter:
    """Builds the events of one diff, in order."""

    def __init__(self, watch: WatchSpec, now: float, position: int) -> None:
        self.watch = watch
        self.now = now
        self.position = position
        """Position of the watch's last event so far: each event takes the next one."""
        self.timestamp = ""
        """Formatted at the first event: most polls have none."""
        self.events: list[Event] = []

    def emit(self, event_type: EventType, sequence: int, bulk_id: int | None, **fields: Any) -> None:
        data = EventData(
            event_id=event_id(self.watch.id, bulk_id, sequence, event_type),
            watch_id=self.watch.id,
            loyalty_club_slug=self.watch.loyalty_club_slug,
            import_id=self.watch.import_id,
            sequence=sequence,
            position=self.position + 1,
            bulk_id=UNSET if bulk_id is None else bulk_id,
            **fields,
        )
        self.position += 1
        self.timestamp = self.timestamp or iso_timestamp(self.now)
        self.events.append(Event(type=event_type, timestamp=self.timestamp, data=data))


def _counts(bulk: MpcBulk) -> tuple[int, int, int, int, int]:
    return (
        bulk.members_in_payload_number or 0,
        bulk.members_created_number or 0,
        bulk.members_updated_number or 0,
        bulk.members_with_validation_errors_number or 0,
        bulk.retries or 0,
    )


def _snap_counts(snap: BulkSnapshot) -> tuple[int, int, int, int, int]:
    return (snap.payload, snap.created, snap.updated, snap.invalid, snap.retries)


def _view(import_id: str, bulk_id: int, snap: BulkSnapshot, bulk: MpcBulk | None) -> BulkView:
    """The MPC bulk fields of an event: from the response when there is one, else the snapshot."""
    if bulk is not None:
        payload, created, updated, invalid, retries = _counts(bulk)
        return BulkView(
            id=bulk.id,
            import_id=bulk.import_id or import_id,
            request_number=bulk.request_number,
            operation=bulk.operation,
            status=bulk.status,
            members_in_payload_number=payload,
            members_created_number=created,
            members_updated_number=updated,
            members_with_validation_errors_number=invalid,
            retries=retries,
            created_at=bulk.created_at,
        )
    return BulkView(
        id=bulk_id,
        import_id=import_id,
        request_number=snap.request_number,
        status=snap.status,
        members_in_payload_number=snap.payload,
        members_created_number=snap.created,
        members_updated_number=snap.updated,
        members_with_validation_errors_number=snap.invalid,
        retries=snap.retries,
    )


def _status_fields(
    snap: BulkSnapshot, bulk: MpcBulk, previous: str | None, watch: WatchSpec, bulk_id: int
) -> dict[str, Any]:
    """``data`` of a status event: the status, where it came from, the bulk, and for
    ``finished`` the outcome and the errors summary."""
    fields: dict[str, Any] = {
        "status": bulk.status,
        "previous_status": previous,
        "retries": snap.retries,
        "bulk": _view(watch.import_id, bulk_id, snap, bulk),
    }
    if bulk.status == "waiting_for_retry":
        fields["max_retries"] = MAX_RETRIES
    if bulk.status == "finished":
        fields["outcome"] = outcome_of(snap.created, snap.updated, snap.invalid, snap.errors_digest)
    if bulk.status in ("finished", "failed") and bulk.members_errors:
        groups, omitted = member_errors.summarize(bulk.members_errors)
        fields["errors_summary"] = groups
        if omitted:
            fields["errors_summary_omitted"] = omitted
    return fields


def _seen(
    old: BulkSnapshot | None,
    bulk: MpcBulk,
    bulk_id: int,
    named: bool,
    watch: WatchSpec,
    now: float,
    out: _Emitter,
) -> BulkSnapshot:
    payload, created, updated, invalid, retries = _counts(bulk)
    errors = member_errors.digest(bulk.members_errors)
    first_sight = old is None or old.status is None
    if old is not None and not errors:
        errors = old.errors_digest  # emptied errors: MPC deleted personal data, not a change
    seq = old.seq if old is not None else 0
    changed = first_sight or (
        old is not None
        and (
            old.missing
            or bulk.status != old.status
            or (payload, created, updated, invalid, retries) != _snap_counts(old)
            or errors != old.errors_digest
        )
    )
    new = BulkSnapshot(
        status=bulk.status,
        request_number=bulk.request_number,
        payload=payload,
        created=created,
        updated=updated,
        invalid=invalid,
        retries=retries,
        errors_digest=errors,
        seq=seq,
        last_seen=now,
        last_changed=now if changed else (old.last_changed if old is not None else now),
        stalled=False if changed else (old.stalled if old is not None else False),
    )
    announce: EventType | None = None
    previous: str | None = None
    if old is None or old.status is None:
        if not named:
            seq += 1
            out.emit(
                "bulk.discovered",
                seq,
                bulk_id,
                status=bulk.status,
                previous_status=None,
                bulk=_view(watch.import_id, bulk_id, new, bulk),
            )
        announce = STATUS_EVENT.get(bulk.status)
    elif old.missing or bulk.status != old.status:
        announce, previous = STATUS_EVENT.get(bulk.status), old.status
    elif bulk.status == "waiting_for_retry" and retries > old.retries:
        announce, previous = "bulk.retrying", old.status
    elif changed and watch.notify_progress and _snap_counts(new) != _snap_counts(old):
        seq += 1
        out.emit(
            "bulk.progress",
            seq,
            bulk_id,
            status=bulk.status,
            previous_status=old.status,
            retries=retries,
            bulk=_view(watch.import_id, bulk_id, new, bulk),
        )
    if announce is not None:
        seq += 1
        out.emit(announce, seq, bulk_id, **_status_fields(new, bulk, previous, watch, bulk_id))
    return msgspec.structs.replace(new, seq=seq)


def _listed(
    old: BulkSnapshot | None, listed: BulkListed, bulk_id: int, watch: WatchSpec, now: float, out: _Emitter
) -> BulkSnapshot | None:
    """Listed with the status we know: seen, unchanged. Listed as newly ``working``: started (the
    listing says all such an event needs). Any other case is unknown until its details come."""
    if old is None or old.status is None or old.missing:
        return old
    if old.status == listed.status:
        return msgspec.structs.replace(old, last_seen=now)
    if listed.status not in LISTING_SUFFICES:
        return old
    new = msgspec.structs.replace(
        old,
        status=listed.status,
        request_number=listed.request_number or old.request_number,
        seq=old.seq + 1,
        last_seen=now,
        last_changed=now,
        stalled=False,
    )
    out.emit(
        STATUS_EVENT[listed.status],
        new.seq,
        bulk_id,
        status=listed.status,
        previous_status=old.status,
        retries=old.retries,
        bulk=_view(watch.import_id, bulk_id, new, None),
    )
    return new


def _gone(
    old: BulkSnapshot | None, bulk_id: int, watch: WatchSpec, now: float, out: _Emitter
) -> BulkSnapshot:
    if old is not None and old.missing:
        return old
    if old is not None and old.status is not None:
        seq = old.seq + 1
        out.emit(
            "bulk.missing",
            seq,
            bulk_id,
            status=old.status,
            previous_status=old.status,
            bulk=_view(watch.import_id, bulk_id, old, None),
        )
        return msgspec.structs.replace(old, missing=True, missing_since=now, seq=seq)
    # A named bulk never seen: missing once it has answered 404 for `missing_after_s`.
    since = old.missing_since if old is not None and old.missing_since else now
    seq = old.seq if old is not None else 0
    if now - since < watch.missing_after_s:
        return BulkSnapshot(seq=seq, missing_since=since)
    seq += 1
    out.emit("bulk.missing", seq, bulk_id, status=None, previous_status=None, reason="not_found")
    return BulkSnapshot(seq=seq, missing_since=since, missing=True)


def _check_stall(
    snap: BulkSnapshot, bulk_id: int, watch: WatchSpec, now: float, out: _Emitter
) -> BulkSnapshot:
    if snap.done or snap.status is None or snap.stalled:
        return snap
    unchanged_for = now - snap.last_changed
    if unchanged_for < watch.stall_after_s:
        return snap
    seq = snap.seq + 1
    out.emit(
        "watch.stalled",
        seq,
        bulk_id,
        status=snap.status,
        previous_status=snap.status,
        unchanged_for_s=round(unchanged_for, 3),
        bulk=_view(watch.import_id, bulk_id, snap, None),
    )
    return msgspec.structs.replace(snap, stalled=True, seq=seq)


def _diff_bulk(
    old: BulkSnapshot | None,
    observed: BulkObservation | None,
    bulk_id: int,
    watch: WatchSpec,
    now: float,
    out: _Emitter,
) -> BulkSnapshot | None:
    named = not watch.whole_import
    new: BulkSnapshot | None
    if isinstance(observed, BulkSeen):
        new = _seen(old, observed.bulk, bulk_id, named, watch, now, out)
    elif isinstance(observed, BulkListed):
        new = _listed(old, observed, bulk_id, watch, now, out)
    elif isinstance(observed, BulkGone):
        new = _gone(old, bulk_id, watch, now, out)
    else:
        new = old
    return None if new is None else _check_stall(new, bulk_id, watch, now, out)


def _scope(watch: WatchSpec, snap: WatchSnapshot, observation: Observation) -> Iterable[int]:
    if watch.bulk_ids is not None:
        return watch.bulk_ids
    return sorted(set(snap.bulks) | set(observation.bulks) | set(observation.listing or ()))


def _observed(observation: Observation, bulk_id: int, known: bool, named: bool) -> BulkObservation | None:
    found = observation.bulks.get(bulk_id)
    if (
        found is None
        and observation.listing is not None
        and bulk_id not in observation.listing
        and (known or named)
    ):
        return BulkGone()
    return found


def _completed(watch: WatchSpec, snap: WatchSnapshot) -> bool:
    if watch.bulk_ids is not None:
        return all(b in snap.bulks and snap.bulks[b].done for b in watch.bulk_ids)
    return bool(snap.bulks) and all(b.done for b in snap.bulks.values())


def import_totals(snap: WatchSnapshot) -> ImportTotals:
    """Counts summed over the bulks a watch has seen."""
    seen = [b for b in snap.bulks.values() if b.status is not None]
    return ImportTotals(
        members_in_payload_number=sum(b.payload for b in seen),
        members_created_number=sum(b.created for b in seen),
        members_updated_number=sum(b.updated for b in seen),
        members_with_validation_errors_number=sum(b.invalid for b in seen),
    )


def _completion_fields(snap: WatchSnapshot) -> dict[str, Any]:
    by_outcome: dict[str, int] = {}
    for bulk in snap.bulks.values():
        kind = bulk_outcome(bulk)
        by_outcome[kind] = by_outcome.get(kind, 0) + 1
    return {
        "totals": import_totals(snap),
        "bulks_by_outcome": dict(sorted(by_outcome.items())),
        "bulk_count": len(snap.bulks),
    }


NOT_FAILURES: Final = frozenset({"rate_limited", "throttled"})
"""Polls held back on purpose: they count no failure and announce nothing."""
FAILING_AT_ONCE: Final = frozenset({"credentials_unreadable"})
"""Failures no retry will cure by itself: announced at the first one, without waiting for the
threshold (the watch stays active, so it recovers once someone fixes the cause)."""


def _on_failure(snap: WatchSnapshot, failure: Failure, rules: Rules, out: _Emitter) -> None:
    if failure.kind in NOT_FAILURES:
        return  # asked to slow down (by MPC or the club's budget): not a failure of the import
    snap.failures += 1
    reason = f"{failure.kind}: {failure.detail}" if failure.detail else failure.kind
    if failure.kind == "unauthorized":
        snap.seq += 1
        out.emit("watch.upstream_failing", snap.seq, None, reason=reason, failures=snap.failures)
        snap.failing = True
        snap.state = "error"
    elif (failure.kind in FAILING_AT_ONCE or snap.failures >= rules.failing_after) and not snap.failing:
        snap.seq += 1
        out.emit("watch.upstream_failing", snap.seq, None, reason=reason, failures=snap.failures)
        snap.failing = True


def diff(
    watch: WatchSpec,
    snapshot: WatchSnapshot | None,
    observation: Observation,
    now: float,
    rules: Rules = DEFAULT_RULES,
) -> Diff:
    """The new snapshot of ``watch`` and the events that take it there from ``snapshot``."""
    snap = (
        WatchSnapshot() if snapshot is None else msgspec.structs.replace(snapshot, bulks=dict(snapshot.bulks))
    )
    if snap.state != "active":
        return Diff(snap, [])
    out = _Emitter(watch, now, events_so_far(snap))
    if observation.failure is not None:
        _on_failure(snap, observation.failure, rules, out)
    else:
        if snap.failing:
            snap.seq += 1
            out.emit("watch.upstream_recovered", snap.seq, None, failures=snap.failures)
            snap.failing = False
        snap.failures = 0
        named = not watch.whole_import
        for bulk_id in _scope(watch, snap, observation):
            old = snap.bulks.get(bulk_id)
            observed = _observed(observation, bulk_id, old is not None, named)
            new = _diff_bulk(old, observed, bulk_id, watch, now, out)
            if new is not None:
                snap.bulks[bulk_id] = new
        if _completed(watch, snap):
            snap.seq += 1
            out.emit("import.completed", snap.seq, None, **_completion_fields(snap))
            snap.state = "completed"
    if snap.state == "active" and now >= watch.expires_at:
        snap.seq += 1
        out.emit("watch.expired", snap.seq, None, expires_at=iso_timestamp(watch.expires_at))
        snap.state = "expired"
    return Diff(snap, out.events)
