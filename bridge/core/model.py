"""The data the pure core works on: MPC shapes, watches, snapshots, observations and events.

Everything here is a ``msgspec.Struct`` and crosses process boundaries as such (Redis values,
job arguments, event payloads). Nothing here does I/O.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias

import msgspec
from msgspec import UNSET, Struct, UnsetType

BulkStatus: TypeAlias = Literal["waiting", "working", "finished", "failed", "waiting_for_retry"]
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"finished", "failed"})
ACTIVE_STATUSES: Final[frozenset[str]] = frozenset({"working", "waiting_for_retry"})
"""Statuses during which MPC's background job is busy: polled at the minimum interval."""

WatchState: TypeAlias = Literal["active", "completed", "stopped", "expired", "error"]
EventType: TypeAlias = Literal[
    "bulk.discovered",
    "bulk.started",
    "bulk.retrying",
    "bulk.finished",
    "bulk.failed",
    "bulk.progress",
    "bulk.missing",
    "import.completed",
    "watch.upstream_failing",
    "watch.upstream_recovered",
    "watch.stalled",
    "watch.expired",
    "webhook.test",
]
EVENT_TYPES: Final[tuple[str, ...]] = EventType.__args__  # type: ignore[attr-defined]
Outcome: TypeAlias = Literal["clean", "with_errors", "nothing_imported"]

STATUS_EVENT: Final[dict[str, EventType]] = {
    "working": "bulk.started",
    "waiting_for_retry": "bulk.retrying",
    "finished": "bulk.finished",
    "failed": "bulk.failed",
}
"""The event announcing that a bulk reached a status (``waiting`` has none: it is where bulks start)."""

MAX_RETRIES: Final = 5

DAY_S: Final = 86_400
STALL_AFTER_DEFAULT_S: Final = 7200
"""A watch announces ``watch.stalled`` when a bulk has not changed for this long (2 h)."""
EXPIRES_AFTER_DEFAULT_S: Final = 2 * DAY_S
"""A watch that has not completed after this long expires."""
MISSING_AFTER_DEFAULT_S: Final = 900
"""A named bulk still unknown to MPC after this long is announced ``bulk.missing``."""
"""MPC retries a failing bulk at most five times before it becomes ``failed``."""


# ---------------------------------------------------------------------------- MPC (upstream)


class MpcBulk(Struct, kw_only=True):
    """``GET /v3/{slug}/members/imports/{import_id}/bulks/{bulk_id}``; unknown fields are ignored."""

    id: int
    status: BulkStatus
    import_id: str = ""
    request_number: int = 0
    operation: str = ""
    members_in_payload_number: int | None = 0
    members_created_number: int | None = 0
    members_updated_number: int | None = 0
    members_with_validation_errors_number: int | None = 0
    retries: int | None = 0
    members_errors: dict[str, Any] | list[Any] | None = None
    """Keyed by member identifier; PHP-style APIs send ``[]`` for an empty object."""
    created_at: str | None = None


class MpcImportBulk(Struct, kw_only=True):
    """One entry of an import's ``bulks`` list."""

    id: int
    status: BulkStatus
    request_number: int = 0


class MpcImport(Struct, kw_only=True):
    """``GET /v3/{slug}/members/imports/{import_id}``: totals and every bulk's status."""

    bulks: list[MpcImportBulk] = msgspec.field(default_factory=list)
    members_in_payload_number: int | None = None
    members_in_payloads_number: int | None = None
    """The older documentation's spelling of ``members_in_payload_number``."""
    members_created_number: int | None = None
    members_updated_number: int | None = None
    members_with_validation_errors_number: int | None = None
    created_at: str | None = None

    @property
    def payload_total(self) -> int | None:
        if self.members_in_payload_number is not None:
            return self.members_in_payload_number
        return self.members_in_payloads_number


# ---------------------------------------------------------------------------- watches


class SlackTarget(Struct, kw_only=True, forbid_unknown_fields=True):
    channel: str


class WatchSpec(Struct, kw_only=True, array_like=True):
    """A watch as it was created: what to follow and how. Immutable once stored.

    Stored as an array (one per watch, 100,000s of them): new fields go at the end, with a
    default, so specs stored by an older version still decode.
    """

    id: str
    loyalty_club_slug: str
    import_id: str
    created_at: float
    expires_at: float
    bulk_ids: tuple[int, ...] | None = None
    """The bulks to follow; ``None`` follows the whole import, discovering bulks as they appear."""
    slack: SlackTarget | None = None
    notify_progress: bool = False
    stall_after_s: float = STALL_AFTER_DEFAULT_S
    missing_after_s: float = MISSING_AFTER_DEFAULT_S
    created_by: str | None = None
    """Id of the API key that created the watch (``None``: created before keys were recorded)."""

    @property
    def whole_import(self) -> bool:
        return self.bulk_ids is None

    @property
    def tracker_id(self) -> str:
        return tracker_id(self.loyalty_club_slug, self.import_id)


def tracker_id(slug: str, import_id: str) -> str:
    """The polling unit: one per MPC import, shared by every watch on it."""
    return f"{slug}/{import_id}"


# ---------------------------------------------------------------------------- snapshots


class BulkSnapshot(Struct, kw_only=True, array_like=True):
    """The last observed state of one bulk, as one watch knows it (stored compactly)."""

    status: BulkStatus | None = None
    """``None`` until the bulk has been seen (a named bulk that answered 404 so far)."""
    request_number: int = 0
    payload: int = 0
    created: int = 0
    updated: int = 0
    invalid: int = 0
    retries: int = 0
    errors_digest: str = ""
    seq: int = 0
    """Sequence number of the last event about this bulk."""
    last_seen: float = 0.0
    last_changed: float = 0.0
    missing: bool = False
    missing_since: float = 0.0
    stalled: bool = False

    @property
    def done(self) -> bool:
        """Nothing more to learn: terminal, or gone from MPC."""
        return self.missing or self.status in TERMINAL_STATUSES


class WatchSnapshot(Struct, kw_only=True, array_like=True):
    """Everything the diff engine remembers about one watch between two polls.

    Stored as an array (one per watch): new fields go at the end, with a default.
    """

    bulks: dict[int, BulkSnapshot] = msgspec.field(default_factory=dict)
    seq: int = 0
    """Sequence number of the last watch-level event (bulk events count per bulk)."""
    failures: int = 0
    """Consecutive failed polls."""
    failing: bool = False
    """``watch.upstream_failing`` was announced and no success followed yet."""
    state: WatchState = "active"


# ---------------------------------------------------------------------------- observations

FailureKind: TypeAlias = Literal[
    "not_found",
    "unauthorized",
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "malformed",
    "rejected",
    "credentials_unreadable",
    "throttled",
]
"""Why a request to MPC got no answer. ``credentials_unreadable``: the club's stored token cannot be
decrypted with the configured keys (nothing was sent). ``throttled``: the club's own request
budget in the bridge is spent for now (nothing was sent; not a failure of MPC or of the import)."""


class Failure(Struct, kw_only=True, frozen=True):
    kind: FailureKind
    detail: str = ""
    retry_after: float | None = None


class BulkSeen(Struct, tag="seen", frozen=True):
    """The bulk endpoint answered: every field is known."""

    bulk: MpcBulk


class BulkListed(Struct, tag="listed", frozen=True):
    """The import endpoint listed the bulk with this status; its details were not fetched."""

    status: BulkStatus
    request_number: int = 0


class BulkGone(Struct, tag="gone", frozen=True):
    """The bulk endpoint answered 404, or the import no longer lists the bulk."""


BulkObservation: TypeAlias = BulkSeen | BulkListed | BulkGone


class Observation(Struct, kw_only=True, frozen=True):
    """What one poll of an import (or of some of its bulks) learnt.

    A bulk absent from ``bulks`` is unknown this time (its request failed or was not made),
    except that, when ``listing`` is given, a known bulk the listing lacks is gone.
    """

    failure: Failure | None = None
    bulks: dict[int, BulkObservation] = msgspec.field(default_factory=dict)
    listing: frozenset[int] | None = None
    """Every bulk id the import endpoint listed (``None``: the import endpoint was not asked)."""
    sent_at: float | None = None
    """When the request that paces the import's polls went to MPC (epoch s; ``None``: none did):
    the import request, or the last of the bulk requests when the watches name their bulks."""


# ---------------------------------------------------------------------------- events


class BulkView(Struct, kw_only=True):
    """The MPC bulk fields carried by an event (``members_errors`` is summarised, not copied)."""

    id: int
    import_id: str
    request_number: int
    status: BulkStatus | None
    members_in_payload_number: int
    members_created_number: int
    members_updated_number: int
    members_with_validation_errors_number: int
    retries: int
    operation: str | UnsetType = UNSET
    created_at: str | None | UnsetType = UNSET


class ErrorGroup(Struct, kw_only=True):
    """Members that failed validation on one property with one error code."""

    property: str
    error: str
    count: int
    examples: list[str]


class ImportTotals(Struct, kw_only=True):
    members_in_payload_number: int = 0
    members_created_number: int = 0
    members_updated_number: int = 0
    members_with_validation_errors_number: int = 0


class EventData(Struct, kw_only=True, omit_defaults=True):
    """``data`` of an event; fields that do not apply to a type are left out."""

    event_id: str
    watch_id: str
    loyalty_club_slug: str
    import_id: str
    sequence: int
    position: int | UnsetType = UNSET
    """The event's place among all events of its watch (1, 2, 3, ...); unset for a test event."""
    bulk_id: int | None | UnsetType = UNSET
    status: str | None | UnsetType = UNSET
    previous_status: str | None | UnsetType = UNSET
    outcome: Outcome | UnsetType = UNSET
    retries: int | UnsetType = UNSET
    max_retries: int | UnsetType = UNSET
    bulk: BulkView | UnsetType = UNSET
    errors_summary: list[ErrorGroup] | UnsetType = UNSET
    errors_summary_omitted: int | UnsetType = UNSET
    """Error groups left out of ``errors_summary`` to keep the payload small."""
    totals: ImportTotals | UnsetType = UNSET
    bulks_by_outcome: dict[str, int] | UnsetType = UNSET
    bulk_count: int | UnsetType = UNSET
    reason: str | UnsetType = UNSET
    failures: int | UnsetType = UNSET
    unchanged_for_s: float | UnsetType = UNSET
    expires_at: str | UnsetType = UNSET


class Event(Struct, kw_only=True):
    """An event: the Standard Webhooks payload (``type``, ``timestamp``, ``data``)."""

    type: EventType
    timestamp: str
    data: EventData

    @property
    def id(self) -> str:
        return self.data.event_id
