"""``/v1/watches``: create, show, stop and read the timeline of watches."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, Parameter, QueryParameter
from litestar.response import Response

from bridge.api.auth import Principal, PrincipalDep, audit
from bridge.api.deps import SettingsDep, StoreDep
from bridge.api.docs import CREATE_ERRORS, READ_ERRORS, errors, scoped
from bridge.api.errors import ApiError, decode_strictly
from bridge.api.params import Cursor, Limit, offset_of
from bridge.api.schemas import (
    PAGE_DEFAULT,
    SLUG_PATTERN,
    Page,
    TimelineItem,
    WatchCreate,
    WatchOut,
    encode_cursor,
    watch_out,
)
from bridge.config import Settings
from bridge.core import patterns
from bridge.core.codec import decode_event
from bridge.core.model import SlackTarget, WatchSpec, WatchState
from bridge.store.redis_store import LimitReached, RedisStore, WatchRecord

FINGERPRINT_BYTES: Final = 16
WATCH_ID_PREFIX: Final = "wch_"
WATCH_ID_BYTES: Final = 12
WATCH_ID_PATTERN: Final = patterns.WATCH_ID
MAX_POSITION: Final = 10**9 - 1
"""Largest ``after`` accepted: as far as a cursor goes (nine digits)."""


WatchId = Annotated[str, Parameter(description="watch id", pattern=WATCH_ID_PATTERN)]
ClubFilter = Annotated[str | None, Parameter(pattern=SLUG_PATTERN, description="only this club's watches")]
After = Annotated[
    int,
    Parameter(
        # gt=-1, not ge=0: Litestar leaves a bound of 0 out of the OpenAPI document.
        gt=-1,
        le=MAX_POSITION,
        description=(
            "only events after this position: a receiver catching up from the last one it applied "
            "(with a cursor too, the later of the two)"
        ),
    ),
]
StateFilter = Annotated[
    WatchState | None, QueryParameter(name="state", description="only watches in this state")
]


def new_watch_id() -> str:
    return WATCH_ID_PREFIX + secrets.token_hex(WATCH_ID_BYTES)


def fingerprint(data: WatchCreate) -> str:
    """Identical creation requests (bulk order aside) have the same fingerprint (128 bits,
    url-safe base64: kept once per active watch)."""
    canonical = msgspec.structs.replace(
        data, bulk_ids=sorted(data.bulk_ids) if data.bulk_ids is not None else None
    )
    digest = hashlib.sha256(msgspec.json.encode(canonical)).digest()[:FINGERPRINT_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def spec_from(
    data: WatchCreate, watch_id: str, now: float, *, max_bulk_ids: int, created_by: str | None = None
) -> WatchSpec:
    if data.bulk_ids is not None and len(data.bulk_ids) > max_bulk_ids:
        raise ApiError(
            422,
            "validation_error",
            f"bulk_ids names {len(data.bulk_ids)} bulks; at most {max_bulk_ids} (or omit it to watch the "
            "whole import)",
            [{"key": "bulk_ids", "message": f"more than {max_bulk_ids} bulk ids"}],
        )
    if data.bulk_ids is not None and len(set(data.bulk_ids)) != len(data.bulk_ids):
        raise ApiError(
            422,
            "validation_error",
            "bulk_ids must not repeat an id",
            [{"key": "bulk_ids", "message": "duplicate bulk id"}],
        )
    return WatchSpec(
        id=watch_id,
        loyalty_club_slug=data.loyalty_club_slug,
        import_id=data.import_id,
        created_at=now,
        expires_at=now + data.expires_after_s,
        bulk_ids=tuple(data.bulk_ids) if data.bulk_ids is not None else None,
        slack=SlackTarget(channel=data.slack.channel) if data.slack is not None else None,
        notify_progress=data.notify_progress,
        stall_after_s=float(data.stall_after_s),
        missing_after_s=float(data.missing_after_s),
        created_by=created_by,
    )


async def _record(store: RedisStore, watch_id: str) -> WatchOut:
    record = await store.get_watch(watch_id)
    if record is None:
        raise ApiError(404, "not_found", f"no watch {watch_id}")
    return watch_out(record)


async def _visible_record(store: RedisStore, principal: Principal, watch_id: str) -> WatchRecord:
    """The watch; 404 when it does not exist or belongs to a club the key does not hold."""
    record = await store.get_watch(watch_id)
    missing = f"no watch {watch_id}"
    if record is None:
        raise ApiError(404, "not_found", missing)
    principal.check_read(record.spec.loyalty_club_slug, missing)
    return record


async def _visible(store: RedisStore, principal: Principal, watch_id: str) -> WatchSpec:
    """The watch's spec; 404 when it does not exist or belongs to a club the key does not hold."""
    return (await _visible_record(store, principal, watch_id)).spec


# ------------------------------------------------------------------ what the routes do
# (the console's pages do the same through these, so both answer alike)


async def create_watch(
    store: RedisStore, settings: Settings, principal: Principal, data: WatchCreate
) -> tuple[WatchOut, bool]:
    """Create the watch ``data`` asks for; ``(watch, False)`` when an identical active one exists.
    Raises :class:`ApiError`: 422 for what the schema alone cannot refuse, 403 for a club the key
    does not hold (or a viewer key)."""
    spec = spec_from(
        data,
        new_watch_id(),
        time.time(),
        max_bulk_ids=settings.watch_max_bulk_ids,
        created_by=principal.key_id,
    )
    principal.check_club(spec.loyalty_club_slug)
    try:
        most = settings.max_watches_per_club
        created, watch_id = await store.create_watch(
            spec, fingerprint(data), settings.poll_min_interval_s, max_per_club=most
        )
    except LimitReached as reached:
        raise ApiError(
            409,
            "limit_reached",
            f"club {spec.loyalty_club_slug} has {reached.limit} active watches, the most allowed: "
            "stop one or wait for one to end",
        ) from None
    if created:
        audit(principal, "watch.create", watch_id=watch_id, club=spec.loyalty_club_slug)
    return await _record(store, watch_id), created


async def stop_watch(store: RedisStore, principal: Principal, watch_id: str) -> WatchOut:
    """Stop a watch (idempotent); 404 when there is no such watch or it is another club's."""
    spec = await _visible(store, principal, watch_id)
    principal.check_club(spec.loyalty_club_slug)
    if await store.stop_watch(spec, time.time()):
        audit(principal, "watch.stop", watch_id=watch_id, club=spec.loyalty_club_slug)
    return await _record(store, watch_id)


async def timeline_items(
    store: RedisStore, watch_id: str, offset: int, limit: int
) -> tuple[list[TimelineItem], bool]:
    """Up to ``limit`` timeline entries from ``offset``, oldest first, and whether more follow."""
    bodies = await store.timeline(watch_id, offset, limit + 1)
    items = []
    for index, body in enumerate(bodies[:limit]):
        event = decode_event(body)
        bulk_id = event.data.bulk_id if isinstance(event.data.bulk_id, int) else None
        items.append(
            TimelineItem(
                event_id=event.id,
                type=event.type,
                sequence=event.data.sequence,
                position=offset + index + 1,
                timestamp=event.timestamp,
                bulk_id=bulk_id,
                data=event.data,
            )
        )
    return items, len(bodies) > limit


class WatchController(Controller):
    path = "/watches"
    tags = ["watches"]

    @post(
        "/",
        summary="Watch an import (201), or get the identical active watch (200)",
        description=scoped("editor", "for a club the key holds (another club: 403 `forbidden_club`)"),
        status_code=201,
        responses={
            200: ResponseSpec(WatchOut, description="An identical active watch exists: here it is."),
            **errors(*CREATE_ERRORS, 409),
        },
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[WatchCreate],
        store: StoreDep,
        settings: SettingsDep,
        principal: PrincipalDep,
    ) -> Response[WatchOut]:
        # Litestar converts leniently ("1" becomes 1); the contract is the schema, exactly.
        data = decode_strictly(await request.body(), WatchCreate)
        watch, created = await create_watch(store, settings, principal, data)
        return Response(watch, status_code=201 if created else 200)

    @get(
        "/",
        summary="Watches, newest first, filtered by club and state",
        description=scoped("viewer", "only the watches of the clubs the key holds"),
        responses=errors(400, 401, 422),
    )
    async def list_watches(
        self,
        store: StoreDep,
        principal: PrincipalDep,
        loyalty_club_slug: ClubFilter = None,
        state_filter: StateFilter = None,
        cursor: Cursor = None,
        limit: Limit = PAGE_DEFAULT,
    ) -> Page[WatchOut]:
        offset = offset_of(cursor)
        if loyalty_club_slug is not None and not principal.sees(loyalty_club_slug):
            return Page(items=[], next_cursor=None)
        records, next_offset = await store.list_watches(
            slug=loyalty_club_slug, state=state_filter, offset=offset, limit=limit, clubs=principal.clubs
        )
        return Page(
            items=[watch_out(r) for r in records],
            next_cursor=encode_cursor(next_offset) if next_offset is not None else None,
        )

    @get(
        "/{watch_id:str}",
        summary="A watch with every bulk's snapshot and the import totals",
        description=scoped("viewer", "of a club the key holds (another club's watch: 404)"),
        responses=errors(401, 404, 422),
    )
    async def show(self, watch_id: WatchId, store: StoreDep, principal: PrincipalDep) -> WatchOut:
        return watch_out(await _visible_record(store, principal, watch_id))

    @delete(
        "/{watch_id:str}",
        summary="Stop a watch (idempotent)",
        description=scoped("editor", "of a club the key holds (another club's watch: 404)"),
        status_code=200,
        responses=errors(401, 403, 404, 422),
    )
    async def stop(self, watch_id: WatchId, store: StoreDep, principal: PrincipalDep) -> WatchOut:
        return await stop_watch(store, principal, watch_id)

    @get(
        "/{watch_id:str}/events",
        summary="The watch's timeline in position order, oldest first; `after` resumes after a position",
        description=scoped("viewer", "of a club the key holds (another club's watch: 404)"),
        responses=errors(*READ_ERRORS),
    )
    async def events(
        self,
        watch_id: WatchId,
        store: StoreDep,
        principal: PrincipalDep,
        cursor: Cursor = None,
        limit: Limit = PAGE_DEFAULT,
        after: After = 0,
    ) -> Page[TimelineItem]:
        # The timeline lists every event of the watch once, in position order: the event at
        # position N is its N-th entry, so "after N" is the offset N, which is also what a cursor
        # holds.
        offset = max(after, offset_of(cursor))
        await _visible(store, principal, watch_id)
        items, more = await timeline_items(store, watch_id, offset, limit)
        next_cursor = encode_cursor(offset + limit) if more else None
        return Page(items=items, next_cursor=next_cursor)
