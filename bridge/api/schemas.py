"""Request and response bodies of the API (``msgspec.Struct``; unknown request fields are rejected)."""

from __future__ import annotations

from typing import Annotated, Final, Generic, TypeVar

from msgspec import Meta, Struct

from bridge.config import WATCH_BULK_IDS_CEILING
from bridge.core import patterns
from bridge.core.diff import bulk_outcome, import_totals, iso_timestamp
from bridge.core.model import (
    DAY_S,
    EXPIRES_AFTER_DEFAULT_S,
    MAX_RETRIES,
    MISSING_AFTER_DEFAULT_S,
    STALL_AFTER_DEFAULT_S,
    BulkSnapshot,
    EventData,
    ImportTotals,
    SlackTarget,
    WatchSnapshot,
)
from bridge.store.redis_store import WatchRecord

SLUG_PATTERN: Final = patterns.SLUG
IMPORT_ID_PATTERN: Final = patterns.IMPORT_ID
SLACK_CHANNEL_PATTERN: Final = patterns.SLACK_CHANNEL
MAX_BULK_IDS: Final = WATCH_BULK_IDS_CEILING
"""The schema's bound; the configured one (``BRIDGE_WATCH_MAX_BULK_IDS``) is checked on creation."""
MAX_BULK_ID: Final = 2**53 - 1
"""Largest bulk id accepted (exact in every JSON parser)."""
WATCH_OPTION_MIN_S: Final = 60
WATCH_OPTION_MAX_S: Final = 30 * DAY_S
PAGE_DEFAULT: Final = 50
PAGE_MAX: Final = 500

Slug = Annotated[
    str, Meta(pattern=SLUG_PATTERN, description="MPC loyalty club slug", examples=["infinity-mall"])
]
ImportId = Annotated[
    str,
    Meta(
        pattern=IMPORT_ID_PATTERN,
        description="MPC import id",
        examples=["89405ae3-2dd5-46cb-a13b-840bc588199b"],
    ),
]
BulkId = Annotated[int, Meta(ge=1, le=MAX_BULK_ID)]
Seconds = Annotated[int, Meta(ge=WATCH_OPTION_MIN_S, le=WATCH_OPTION_MAX_S)]


class SlackTargetIn(Struct, kw_only=True, forbid_unknown_fields=True):
    channel: Annotated[
        str,
        Meta(
            pattern=SLACK_CHANNEL_PATTERN, description="Slack channel id or #name", examples=["C0123456789"]
        ),
    ]


class WatchCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/watches``. Without ``bulk_ids`` the whole import is watched."""

    loyalty_club_slug: Slug
    import_id: ImportId
    bulk_ids: (
        Annotated[
            list[BulkId],
            Meta(
                min_length=1,
                max_length=MAX_BULK_IDS,
                extra_json_schema={"uniqueItems": True},
                description="the bulks to follow; omitted: the whole import, bulks discovered as they appear",
                examples=[[11, 12]],
            ),
        ]
        | None
    ) = None
    slack: SlackTargetIn | None = None
    notify_progress: bool = False
    stall_after_s: Seconds = STALL_AFTER_DEFAULT_S
    expires_after_s: Seconds = EXPIRES_AFTER_DEFAULT_S
    missing_after_s: Seconds = MISSING_AFTER_DEFAULT_S


class BulkOut(Struct, kw_only=True):
    bulk_id: int
    status: str | None
    request_number: int
    members_in_payload_number: int
    members_created_number: int
    members_updated_number: int
    members_with_validation_errors_number: int
    retries: int
    max_retries: int
    outcome: str | None
    missing: bool
    stalled: bool
    sequence: int
    last_seen_at: str | None
    last_changed_at: str | None


class UpstreamOut(Struct, kw_only=True):
    consecutive_failures: int
    failing: bool


class WatchOut(Struct, kw_only=True):
    id: str
    loyalty_club_slug: str
    import_id: str
    bulk_ids: list[int] | None
    slack: SlackTarget | None
    notify_progress: bool
    stall_after_s: float
    missing_after_s: float
    state: str
    created_at: str
    updated_at: str
    expires_at: str
    ended_at: str | None
    bulks: list[BulkOut]
    totals: ImportTotals
    upstream: UpstreamOut
    created_by: str | None
    """Id of the API key that created the watch."""


class TimelineItem(Struct, kw_only=True):
    event_id: str
    type: str
    sequence: int
    position: Annotated[
        int, Meta(ge=1, description="The event's place in its watch's timeline: 1, 2, 3, ...")
    ]
    timestamp: str
    bulk_id: int | None
    data: EventData


T = TypeVar("T")


class Page(Struct, Generic[T], kw_only=True):
    items: list[T]
    next_cursor: str | None


def _iso_or_none(epoch_s: float) -> str | None:
    return iso_timestamp(epoch_s) if epoch_s else None


def bulk_out(bulk_id: int, snap: BulkSnapshot) -> BulkOut:
    return BulkOut(
        bulk_id=bulk_id,
        status=snap.status,
        request_number=snap.request_number,
        members_in_payload_number=snap.payload,
        members_created_number=snap.created,
        members_updated_number=snap.updated,
        members_with_validation_errors_number=snap.invalid,
        retries=snap.retries,
        max_retries=MAX_RETRIES,
        outcome=bulk_outcome(snap) if snap.done else None,
        missing=snap.missing,
        stalled=snap.stalled,
        sequence=snap.seq,
        last_seen_at=_iso_or_none(snap.last_seen),
        last_changed_at=_iso_or_none(snap.last_changed),
    )


def watch_out(record: WatchRecord) -> WatchOut:
    spec = record.spec
    snapshot = record.snapshot or WatchSnapshot()
    bulk_ids = sorted(set(spec.bulk_ids or ()) | set(snapshot.bulks))
    bulks = [bulk_out(b, snapshot.bulks.get(b, BulkSnapshot())) for b in bulk_ids]
    return WatchOut(
        id=spec.id,
        loyalty_club_slug=spec.loyalty_club_slug,
        import_id=spec.import_id,
        bulk_ids=list(spec.bulk_ids) if spec.bulk_ids is not None else None,
        slack=spec.slack,
        notify_progress=spec.notify_progress,
        stall_after_s=spec.stall_after_s,
        missing_after_s=spec.missing_after_s,
        state=record.state,
        created_at=iso_timestamp(record.created_at),
        updated_at=iso_timestamp(record.updated_at),
        expires_at=iso_timestamp(spec.expires_at),
        ended_at=iso_timestamp(record.ended_at) if record.ended_at else None,
        bulks=bulks,
        totals=import_totals(snapshot),
        upstream=UpstreamOut(consecutive_failures=snapshot.failures, failing=snapshot.failing),
        created_by=spec.created_by,
    )


CURSOR_PATTERN: Final = patterns.CURSOR
"""A cursor is the position to continue from: every cursor the pattern allows is a valid one."""


def encode_cursor(offset: int) -> str:
    return str(offset)


def decode_cursor(cursor: str | None) -> int | None:
    """The position in a cursor; ``None`` when it is not one (the route answers 400)."""
    if not cursor:
        return 0
    return int(cursor) if cursor.isascii() and cursor.isdigit() else None
