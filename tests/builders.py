"""Small builders for core data, shared by the tests."""

from __future__ import annotations

from typing import Any

from bridge.core.model import (
    BulkGone,
    BulkListed,
    BulkObservation,
    BulkSeen,
    BulkStatus,
    Failure,
    FailureKind,
    MpcBulk,
    Observation,
    SlackTarget,
    WatchSpec,
)

T0 = 1_800_000_000.0
"""A fixed clock start (2027-01-15): the tests never read the real clock."""
IMPORT_ID = "89405ae3-2dd5-46cb-a13b-840bc588199b"
SLUG = "infinity-mall"


def watch(bulk_ids: tuple[int, ...] | None = None, **options: Any) -> WatchSpec:
    fields: dict[str, Any] = {
        "id": "wch_000000000000000000000001",
        "loyalty_club_slug": SLUG,
        "import_id": IMPORT_ID,
        "created_at": T0,
        "expires_at": T0 + 172_800,
        "bulk_ids": bulk_ids,
        "slack": SlackTarget(channel="C0123456789"),
    }
    fields.update(options)
    return WatchSpec(**fields)


def bulk(bulk_id: int, status: BulkStatus, **fields: Any) -> MpcBulk:
    values: dict[str, Any] = {
        "id": bulk_id,
        "import_id": IMPORT_ID,
        "request_number": bulk_id % 100,
        "operation": "create",
        "status": status,
        "members_in_payload_number": 13,
        "members_created_number": 0,
        "members_updated_number": 0,
        "members_with_validation_errors_number": 0,
        "retries": 0,
        "members_errors": {},
        "created_at": "2018-07-30T17:14:03.738Z",
    }
    values.update(fields)
    return MpcBulk(**values)


def seen(*bulks: MpcBulk, listing: bool = False) -> Observation:
    observed: dict[int, BulkObservation] = {b.id: BulkSeen(bulk=b) for b in bulks}
    return Observation(bulks=observed, listing=frozenset(observed) if listing else None)


def listed(statuses: dict[int, BulkStatus], fetched: tuple[MpcBulk, ...] = ()) -> Observation:
    """An import poll: every bulk listed, the ``fetched`` ones with details."""
    observed: dict[int, BulkObservation] = {b: BulkListed(status=s) for b, s in statuses.items()}
    for b in fetched:
        observed[b.id] = BulkSeen(bulk=b)
    return Observation(bulks=observed, listing=frozenset(statuses))


def gone(*bulk_ids: int) -> Observation:
    return Observation(bulks={b: BulkGone() for b in bulk_ids})


def failed(kind: FailureKind = "server_error", retry_after: float | None = None) -> Observation:
    return Observation(failure=Failure(kind=kind, detail="HTTP 500", retry_after=retry_after))


MEMBERS_ERRORS: dict[str, Any] = {
    "joe.bloggs@example.com": {
        "properties": [
            {
                "error": {
                    "language": [
                        {
                            "error": "value_not_match",
                            "value": "pl",
                            "values": "en, no",
                            "property": "language",
                        }
                    ]
                }
            }
        ]
    },
    "anna.k@example.org": {
        "properties": [
            {
                "error": {
                    "language": [{"error": "value_not_match", "value": "de", "property": "language"}],
                    "birth_date": [
                        {"error": "invalid_format", "value": "31.02.1990", "property": "birth_date"}
                    ],
                }
            }
        ]
    },
    "+4712345612": {
        "properties": [{"error": {"gender": [{"error": "value_not_match", "property": "gender"}]}}]
    },
}
