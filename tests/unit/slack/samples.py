"""Deterministic events and snapshots for the renderer's golden payloads: one per event type."""

from __future__ import annotations

from typing import Any

from bridge.core import member_errors
from bridge.core.diff import event_id, iso_timestamp
from bridge.core.model import (
    EVENT_TYPES,
    BulkSnapshot,
    BulkView,
    Event,
    EventData,
    ImportTotals,
    WatchSnapshot,
    WatchSpec,
)
from tests.builders import IMPORT_ID, MEMBERS_ERRORS, SLUG, T0, watch

WATCH: WatchSpec = watch()


def view(bulk_id: int, status: str | None, **counts: int) -> BulkView:
    values: dict[str, Any] = {
        "id": bulk_id,
        "import_id": IMPORT_ID,
        "request_number": bulk_id - 4100,
        "status": status,
        "members_in_payload_number": 20,
        "members_created_number": 0,
        "members_updated_number": 0,
        "members_with_validation_errors_number": 0,
        "retries": 0,
    }
    values.update(counts)
    return BulkView(**values)


def event(kind: str, sequence: int, bulk_id: int | None = None, **fields: Any) -> Event:
    if bulk_id is not None:
        fields["bulk_id"] = bulk_id
    data = EventData(
        event_id=event_id(WATCH.id, bulk_id, sequence, kind),
        watch_id=WATCH.id,
        loyalty_club_slug=SLUG,
        import_id=IMPORT_ID,
        sequence=sequence,
        **fields,
    )
    return Event(type=kind, timestamp=iso_timestamp(T0), data=data)  # type: ignore[arg-type]


MASKED, OMITTED = member_errors.summarize(MEMBERS_ERRORS)
UNMASKED = member_errors.ErrorSummary(groups=member_errors.summarize(MEMBERS_ERRORS, mask=False)[0])

EVENTS: dict[str, Event] = {
    "bulk.discovered": event(
        "bulk.discovered", 1, 4101, status="waiting", previous_status=None, bulk=view(4101, "waiting")
    ),
    "bulk.started": event(
        "bulk.started",
        2,
        4101,
        status="working",
        previous_status="waiting",
        retries=0,
        bulk=view(4101, "working"),
    ),
    "bulk.retrying": event(
        "bulk.retrying",
        3,
        4102,
        status="waiting_for_retry",
        previous_status="working",
        retries=1,
        max_retries=5,
        bulk=view(4102, "waiting_for_retry", retries=1, members_created_number=4),
    ),
    "bulk.finished": event(
        "bulk.finished",
        5,
        4102,
        status="finished",
        previous_status="working",
        outcome="with_errors",
        retries=1,
        bulk=view(
            4102,
            "finished",
            members_created_number=15,
            members_updated_number=2,
            members_with_validation_errors_number=3,
            retries=1,
        ),
        errors_summary=MASKED,
    ),
    "bulk.failed": event(
        "bulk.failed",
        4,
        4103,
        status="failed",
        previous_status="working",
        retries=5,
        bulk=view(4103, "failed", retries=5),
    ),
    "bulk.progress": event(
        "bulk.progress",
        3,
        4101,
        status="working",
        previous_status="working",
        retries=0,
        bulk=view(4101, "working", members_created_number=7),
    ),
    "bulk.missing": event(
        "bulk.missing", 4, 4104, status="working", previous_status="working", bulk=view(4104, "working")
    ),
    "import.completed": event(
        "import.completed",
        1,
        totals=ImportTotals(
            members_in_payload_number=60,
            members_created_number=25,
            members_updated_number=5,
            members_with_validation_errors_number=3,
        ),
        bulks_by_outcome={"clean": 1, "failed": 1, "with_errors": 1},
        bulk_count=3,
    ),
    "watch.upstream_failing": event("watch.upstream_failing", 1, reason="server_error: HTTP 502", failures=5),
    "watch.upstream_recovered": event("watch.upstream_recovered", 2, failures=7),
    "watch.stalled": event(
        "watch.stalled",
        3,
        4101,
        status="working",
        previous_status="working",
        unchanged_for_s=7260.0,
        bulk=view(4101, "working"),
    ),
    "watch.expired": event("watch.expired", 3, expires_at=iso_timestamp(T0 + 172_800)),
    "webhook.test": event("webhook.test", 1),
}
assert set(EVENTS) == set(EVENT_TYPES)

MORE_EVENTS: dict[str, Event] = {
    "bulk.missing-never-found": event(
        "bulk.missing", 1, 4105, status=None, previous_status=None, reason="not_found"
    ),
    "bulk.finished-clean": event(
        "bulk.finished",
        3,
        4101,
        status="finished",
        previous_status="working",
        outcome="clean",
        retries=0,
        bulk=view(4101, "finished", members_created_number=10, members_updated_number=3),
    ),
    "bulk.started-after-retry": event(
        "bulk.started",
        4,
        4102,
        status="working",
        previous_status="waiting_for_retry",
        retries=1,
        bulk=view(4102, "working", retries=1, members_created_number=4),
    ),
    "watch.upstream_failing-unauthorized": event(
        "watch.upstream_failing", 1, reason="unauthorized: HTTP 401", failures=1
    ),
}


def snap(status: str | None, seq: int, **fields: Any) -> BulkSnapshot:
    return BulkSnapshot(status=status, seq=seq, last_seen=T0 + 60, last_changed=T0 + seq, **fields)  # type: ignore[arg-type]


IN_PROGRESS = WatchSnapshot(
    bulks={
        4101: snap("finished", 3, request_number=1, payload=13, created=10, updated=3),
        4102: snap("waiting_for_retry", 3, request_number=2, payload=20, created=4, retries=1),
        4103: snap("working", 2, request_number=3, payload=13),
        4104: snap("waiting", 1, request_number=4, payload=8),
    },
)
COMPLETED = WatchSnapshot(
    bulks={
        4101: snap("finished", 3, request_number=1, payload=13, created=10, updated=3),
        4102: snap(
            "finished",
            5,
            request_number=2,
            payload=20,
            created=15,
            updated=2,
            invalid=3,
            retries=1,
            errors_digest="d",
        ),
        4103: snap("failed", 4, request_number=3, payload=13, retries=5),
        4104: snap("finished", 3, request_number=4, payload=8, invalid=8, errors_digest="e"),
        4105: snap("working", 5, request_number=5, payload=8, missing=True, missing_since=T0 + 50),
    },
    seq=1,
    state="completed",
)
CARDS: dict[str, tuple[WatchSpec, WatchSnapshot | None, str]] = {
    "card-new": (WATCH, None, "active"),
    "card-named-unseen": (watch((11, 12)), WatchSnapshot(bulks={11: BulkSnapshot(seq=0)}), "active"),
    "card-in-progress": (WATCH, IN_PROGRESS, "active"),
    "card-failing": (
        WATCH,
        WatchSnapshot(bulks=IN_PROGRESS.bulks, failures=6, failing=True, seq=1),
        "active",
    ),
    "card-completed": (WATCH, COMPLETED, "completed"),
    "card-stopped": (WATCH, IN_PROGRESS, "stopped"),
    "card-expired": (WATCH, IN_PROGRESS, "expired"),
    "card-error": (WATCH, IN_PROGRESS, "error"),
}
