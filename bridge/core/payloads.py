"""The webhook payload of each event type, as the types that encode it.

:func:`bridge.core.codec.encode_event` writes every event through the type of its event type
here, and the published JSON Schemas (the OpenAPI ``webhooks`` section, ``GET /v1/event-types``)
are generated from the same types: what is sent and what is documented cannot differ. An event
missing a field its type requires cannot be encoded at all.

Field order follows :class:`bridge.core.model.EventData`, so a payload's bytes are the ones the
generic event would have given.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from bridge.core.model import BulkStatus, BulkView, ErrorGroup, ImportTotals, Outcome

EventId = Annotated[
    str,
    Meta(
        description="The event's id, also its `webhook-id`: the same on every retry and redelivery",
        examples=["evt_5f0c4b2a9e8d7c6b5a4f3e2d1c0b9a88"],
    ),
]
WatchId = Annotated[
    str, Meta(description="The watch the event belongs to", examples=["wch_0123456789abcdef01234567"])
]
Slug = Annotated[str, Meta(description="MPC loyalty club slug", examples=["infinity-mall"])]
ImportId = Annotated[
    str, Meta(description="MPC import id", examples=["89405ae3-2dd5-46cb-a13b-840bc588199b"])
]
SequenceNumber = Annotated[
    int,
    Meta(
        ge=0,
        description=(
            "Counts the events about one bulk (bulk events) or about the watch itself (watch-level "
            "events), from 1"
        ),
    ),
]
Position = Annotated[
    int,
    Meta(
        ge=1,
        description=(
            "The event's place among all events of its watch: 1, 2, 3, ... with no gaps and no repeats. "
            "A receiver orders a watch's events by it; `GET /v1/watches/{watch_id}/events?after=N` "
            "returns the events after position N"
        ),
    ),
]
BulkId = Annotated[int, Meta(ge=1, description="The MPC bulk the event is about")]
Timestamp = Annotated[
    str, Meta(description="When the change was seen (RFC 3339, UTC)", examples=["2026-12-05T07:00:00.000Z"])
]
Retries = Annotated[int, Meta(ge=0, description="MPC's retries of the bulk so far")]
MaybeBulk: TypeAlias = Annotated[
    BulkView | UnsetType,
    Meta(description="The bulk as MPC reported it (left out only when the payload would reach 20 kB)"),
]
Summary: TypeAlias = Annotated[
    list[ErrorGroup] | UnsetType,
    Meta(description="Members that failed validation, grouped by property and error (no personal data)"),
]
Omitted: TypeAlias = (
    Annotated[
        int, Meta(ge=1, description="Error groups left out of `errors_summary` to keep the payload small")
    ]
    | UnsetType
)


class _Header(Struct, kw_only=True, omit_defaults=True):
    event_id: EventId
    watch_id: str
    loyalty_club_slug: Slug
    import_id: ImportId
    sequence: SequenceNumber


class _WatchHeader(_Header, kw_only=True, omit_defaults=True):
    watch_id: WatchId
    position: Position


class _BulkHeader(_WatchHeader, kw_only=True, omit_defaults=True):
    bulk_id: BulkId


class BulkDiscoveredData(_BulkHeader, kw_only=True, omit_defaults=True):
    """A bulk of a whole-import watch, seen for the first time."""

    status: BulkStatus
    previous_status: None
    bulk: MaybeBulk = UNSET


class BulkStartedData(_BulkHeader, kw_only=True, omit_defaults=True):
    status: Literal["working"]
    previous_status: BulkStatus | None
    retries: Retries
    bulk: MaybeBulk = UNSET


class BulkRetryingData(_BulkHeader, kw_only=True, omit_defaults=True):
    status: Literal["waiting_for_retry"]
    previous_status: BulkStatus | None
    retries: Retries
    max_retries: Annotated[int, Meta(description="MPC's limit: the bulk fails after this many retries")]
    bulk: MaybeBulk = UNSET


class BulkFinishedData(_BulkHeader, kw_only=True, omit_defaults=True):
    status: Literal["finished"]
    previous_status: BulkStatus | None
    outcome: Annotated[
        Outcome,
        Meta(
            description="`clean`: every member imported; `with_errors`: some failed validation; "
            "`nothing_imported`: none was created or updated"
        ),
    ]
    retries: Retries
    bulk: MaybeBulk = UNSET
    errors_summary: Summary = UNSET
    errors_summary_omitted: Omitted = UNSET


class BulkFailedData(_BulkHeader, kw_only=True, omit_defaults=True):
    status: Literal["failed"]
    previous_status: BulkStatus | None
    retries: Retries
    bulk: MaybeBulk = UNSET
    errors_summary: Summary = UNSET
    errors_summary_omitted: Omitted = UNSET


class BulkProgressData(_BulkHeader, kw_only=True, omit_defaults=True):
    status: BulkStatus
    previous_status: BulkStatus
    retries: Retries
    bulk: MaybeBulk = UNSET


class BulkMissingData(_BulkHeader, kw_only=True, omit_defaults=True):
    status: Annotated[BulkStatus | None, Meta(description="The last status seen; null: never seen")]
    previous_status: BulkStatus | None
    bulk: MaybeBulk = UNSET
    reason: Literal["not_found"] | UnsetType = UNSET


class ImportCompletedData(_WatchHeader, kw_only=True, omit_defaults=True):
    totals: ImportTotals
    bulks_by_outcome: Annotated[
        dict[str, int],
        Meta(
            description="Bulks per outcome: `clean`, `with_errors`, `nothing_imported`, `failed`, `missing`"
        ),
    ]
    bulk_count: Annotated[int, Meta(ge=0)]


class WatchUpstreamFailingData(_WatchHeader, kw_only=True, omit_defaults=True):
    reason: Annotated[str, Meta(description="The last failure, e.g. `server_error: HTTP 503`")]
    failures: Annotated[int, Meta(ge=1, description="Failed polls in a row")]


class WatchUpstreamRecoveredData(_WatchHeader, kw_only=True, omit_defaults=True):
    failures: Annotated[int, Meta(ge=0, description="Failed polls in a row before this success")]


class WatchStalledData(_BulkHeader, kw_only=True, omit_defaults=True):
    status: BulkStatus
    previous_status: BulkStatus
    bulk: MaybeBulk = UNSET
    unchanged_for_s: Annotated[float, Meta(ge=0, description="Seconds since the bulk last changed")]


class WatchExpiredData(_WatchHeader, kw_only=True, omit_defaults=True):
    expires_at: Annotated[str, Meta(description="When the watch expired (RFC 3339, UTC)")]


class WebhookTestData(_Header, kw_only=True, omit_defaults=True):
    """A test event belongs to no watch: ``watch_id`` is empty and it has no ``position``."""

    watch_id: Annotated[str, Meta(max_length=0, description="Always empty: a test event has no watch")]
    sequence: Annotated[int, Meta(ge=0, le=0, description="Always 0")]
    reason: str


DATA_TYPES: Final[dict[str, type[_Header]]] = {
    "bulk.discovered": BulkDiscoveredData,
    "bulk.started": BulkStartedData,
    "bulk.retrying": BulkRetryingData,
    "bulk.finished": BulkFinishedData,
    "bulk.failed": BulkFailedData,
    "bulk.progress": BulkProgressData,
    "bulk.missing": BulkMissingData,
    "import.completed": ImportCompletedData,
    "watch.upstream_failing": WatchUpstreamFailingData,
    "watch.upstream_recovered": WatchUpstreamRecoveredData,
    "watch.stalled": WatchStalledData,
    "watch.expired": WatchExpiredData,
    "webhook.test": WebhookTestData,
}
"""``data`` of each event type."""


def _payload_name(event_type: str) -> str:
    """``bulk.started`` -> ``BulkStarted``, ``watch.upstream_failing`` -> ``WatchUpstreamFailing``."""
    return "".join(part.capitalize() for part in event_type.replace(".", "_").split("_"))


def _payload_type(event_type: str, data: type[_Header]) -> type[Struct]:
    kind: Any = Literal[event_type]
    return msgspec.defstruct(
        _payload_name(event_type),
        [("type", kind), ("timestamp", Timestamp), ("data", data)],
        kw_only=True,
        module=__name__,
    )


PAYLOAD_TYPES: Final[dict[str, type[Struct]]] = {
    event_type: _payload_type(event_type, data) for event_type, data in DATA_TYPES.items()
}
"""The whole webhook body (``type``, ``timestamp``, ``data``) of each event type."""
