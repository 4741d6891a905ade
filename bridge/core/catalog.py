"""The event-type catalog: every event type with a description, its payload type and an example.

It is the one list of event types: ``GET /v1/event-types``, the OpenAPI ``webhooks`` section and
the check that refuses an unknown subscription filter all read it. The examples are built from
the payload types (:mod:`bridge.core.payloads`), so they are valid payloads by construction.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec import Struct

from bridge.core.model import EVENT_TYPES as MODEL_EVENT_TYPES
from bridge.core.model import MAX_RETRIES, BulkView, ErrorGroup, ImportTotals
from bridge.core.payloads import (
    DATA_TYPES,
    PAYLOAD_TYPES,
    BulkDiscoveredData,
    BulkFailedData,
    BulkFinishedData,
    BulkMissingData,
    BulkProgressData,
    BulkRetryingData,
    BulkStartedData,
    ImportCompletedData,
    WatchExpiredData,
    WatchStalledData,
    WatchUpstreamFailingData,
    WatchUpstreamRecoveredData,
    WebhookTestData,
)

_WATCH: Final = "wch_0123456789abcdef01234567"
_CLUB: Final = "infinity-mall"
_IMPORT: Final = "89405ae3-2dd5-46cb-a13b-840bc588199b"
_WHEN: Final = "2026-12-05T07:00:00.000Z"
_BULK: Final = 4101


class EventTypeInfo(Struct, kw_only=True, frozen=True):
    name: str
    """The event type, e.g. ``bulk.finished``."""
    description: str
    payload: type[Struct]
    """The type that encodes this event's webhook body."""
    example: Struct
    """A payload of this type (an instance of ``payload``)."""

    def schema(self) -> dict[str, Any]:
        """The payload's JSON Schema (Draft 2020-12), generated from ``payload``."""
        generated: dict[str, Any] = msgspec.json.schema(self.payload)
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **generated}

    def example_json(self) -> Any:
        return msgspec.to_builtins(self.example)


def _ids(sequence: int, position: int) -> dict[str, Any]:
    return {
        "event_id": f"evt_{position:032x}",
        "watch_id": _WATCH,
        "loyalty_club_slug": _CLUB,
        "import_id": _IMPORT,
        "sequence": sequence,
        "position": position,
    }


def _bulk(status: Any, created: int = 0, updated: int = 0, invalid: int = 0, retries: int = 0) -> BulkView:
    return BulkView(
        id=_BULK,
        import_id=_IMPORT,
        request_number=1,
        status=status,
        members_in_payload_number=created + updated + invalid or 13,
        members_created_number=created,
        members_updated_number=updated,
        members_with_validation_errors_number=invalid,
        retries=retries,
        operation="upsert",
        created_at="2026-12-05T06:58:41+00:00",
    )


_ERRORS: Final = [ErrorGroup(property="email", error="invalid_format", count=2, examples=["m***@e***.com"])]

_EXAMPLE_DATA: Final[dict[str, Struct]] = {
    "bulk.discovered": BulkDiscoveredData(
        **_ids(1, 1), bulk_id=_BULK, status="waiting", previous_status=None, bulk=_bulk("waiting")
    ),
    "bulk.started": BulkStartedData(
        **_ids(2, 2),
        bulk_id=_BULK,
        status="working",
        previous_status="waiting",
        retries=0,
        bulk=_bulk("working"),
    ),
    "bulk.retrying": BulkRetryingData(
        **_ids(3, 3),
        bulk_id=_BULK,
        status="waiting_for_retry",
        previous_status="working",
        retries=1,
        max_retries=MAX_RETRIES,
        bulk=_bulk("waiting_for_retry", retries=1),
    ),
    "bulk.finished": BulkFinishedData(
        **_ids(4, 4),
        bulk_id=_BULK,
        status="finished",
        previous_status="working",
        outcome="with_errors",
        retries=1,
        bulk=_bulk("finished", created=10, updated=1, invalid=2, retries=1),
        errors_summary=_ERRORS,
    ),
    "bulk.failed": BulkFailedData(
        **_ids(4, 4),
        bulk_id=_BULK,
        status="failed",
        previous_status="waiting_for_retry",
        retries=MAX_RETRIES,
        bulk=_bulk("failed", retries=MAX_RETRIES),
    ),
    "bulk.progress": BulkProgressData(
        **_ids(3, 3),
        bulk_id=_BULK,
        status="working",
        previous_status="working",
        retries=0,
        bulk=_bulk("working", created=400, updated=100),
    ),
    "bulk.missing": BulkMissingData(
        **_ids(1, 1), bulk_id=_BULK, status=None, previous_status=None, reason="not_found"
    ),
    "import.completed": ImportCompletedData(
        **_ids(1, 5),
        totals=ImportTotals(
            members_in_payload_number=13,
            members_created_number=10,
            members_updated_number=1,
            members_with_validation_errors_number=2,
        ),
        bulks_by_outcome={"with_errors": 1},
        bulk_count=1,
    ),
    "watch.upstream_failing": WatchUpstreamFailingData(
        **_ids(1, 1), reason="server_error: HTTP 503", failures=5
    ),
    "watch.upstream_recovered": WatchUpstreamRecoveredData(**_ids(2, 2), failures=7),
    "watch.stalled": WatchStalledData(
        **_ids(2, 2),
        bulk_id=_BULK,
        status="waiting",
        previous_status="waiting",
        bulk=_bulk("waiting"),
        unchanged_for_s=7200.0,
    ),
    "watch.expired": WatchExpiredData(**_ids(1, 3), expires_at="2026-12-07T07:00:00.000Z"),
    "webhook.test": WebhookTestData(
        event_id="evt_8c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f",
        watch_id="",
        loyalty_club_slug=_CLUB,
        import_id="",
        sequence=0,
        reason="test event requested for subscription sub_0123456789abcdef01234567",
    ),
}

_DESCRIPTIONS: Final = {
    "bulk.discovered": "A bulk of a whole-import watch was seen for the first time.",
    "bulk.started": "A bulk's status became `working`: MPC's job picked it up.",
    "bulk.retrying": (
        "A bulk's status became `waiting_for_retry`, or it was "
        "retried again (`retries` out of `max_retries`)."
    ),
    "bulk.finished": "A bulk finished; `outcome` is `clean`, `with_errors` or `nothing_imported`.",
    "bulk.failed": "A bulk failed for good (MPC gave up retrying it).",
    "bulk.progress": (
        "A bulk's counts changed without a status change (only for watches with `notify_progress`)."
    ),
    "bulk.missing": (
        "A bulk that was seen answers 404, or a named bulk was still unknown after `missing_after_s`."
    ),
    "import.completed": (
        "Every bulk of the watch is terminal: totals and bulks by outcome. The watch's last event."
    ),
    "watch.upstream_failing": (
        "MPC failed several polls in a row (or refused the token: the watch ends in `error`)."
    ),
    "watch.upstream_recovered": "The first successful poll after `watch.upstream_failing`.",
    "watch.stalled": "A bulk has not changed for `stall_after_s`; announced once per stall.",
    "watch.expired": "The watch reached `expires_at` without completing. The watch's last event.",
    "webhook.test": (
        "A test event asked for through `POST /v1/subscriptions/{id}/test`; it belongs to no watch."
    ),
}


def _entry(event_type: str) -> EventTypeInfo:
    payload = PAYLOAD_TYPES[event_type]
    example = payload(type=event_type, timestamp=_WHEN, data=_EXAMPLE_DATA[event_type])
    return EventTypeInfo(
        name=event_type, description=_DESCRIPTIONS[event_type], payload=payload, example=example
    )


EVENT_CATALOG: Final[dict[str, EventTypeInfo]] = {t: _entry(t) for t in DATA_TYPES}
"""Every event type the bridge sends, in the order of the documentation."""

EVENT_TYPES: Final[tuple[str, ...]] = tuple(EVENT_CATALOG)

if set(EVENT_TYPES) != set(MODEL_EVENT_TYPES):  # pragma: no cover - caught by importing at all
    raise RuntimeError("the event catalog and the model's EventType disagree")
