"""``/v1/subscriptions`` and ``/v1/deliveries``: webhook subscriptions and their attempt logs.

The ``whsec_`` secret is in the answer to a creation or a rotation and nowhere else. Every URL
(created or changed) passes the SSRF guard first: a refusal is a 422 with one message for every
reason (which reason goes to the log), so the API cannot be used to map an internal network.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import Annotated, Any, Final, TypeAlias

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter
from litestar.response import Response
from msgspec import UNSET, Meta, Struct, UnsetType

from bridge.api.auth import Principal, PrincipalDep, audit
from bridge.api.deps import DispatchDep, SettingsDep, StoreDep
from bridge.api.docs import CREATE_ERRORS, READ_ERRORS, WRITE_ERRORS, errors, scoped
from bridge.api.errors import ApiError, decode_strictly
from bridge.api.params import Cursor, Limit, offset_of
from bridge.api.schemas import (
    IMPORT_ID_PATTERN,
    PAGE_DEFAULT,
    SLUG_PATTERN,
    Page,
    encode_cursor,
)
from bridge.config import Settings
from bridge.core import patterns
from bridge.core.diff import iso_timestamp
from bridge.delivery.model import Dispatch
from bridge.logs import get_logger
from bridge.store.redis_store import LimitReached, RedisStore
from bridge.webhooks.actions import EventExpired, redeliver, send_test_event
from bridge.webhooks.guard import MAX_URL_CHARS, REFUSAL_MESSAGE, Refused, UrlGuard
from bridge.webhooks.model import (
    DELIVERY_ID_PATTERN,
    EVENT_TYPE_FAMILIES,
    ID_HEX_CHARS,
    SUBSCRIPTION_ID_PATTERN,
    SUBSCRIPTION_ID_PREFIX,
    WILDCARD,
    Attempt,
    Subscription,
    SubscriptionDoc,
    WebhookDelivery,
    cap_groups,
    valid_event_type_pattern,
)
from bridge.webhooks.signing import new_secret
from bridge.webhooks.store import SecretsMissing, SubscriptionGone, SubscriptionStore

log = get_logger("bridge.api")

MAX_EVENT_TYPES: Final = 50
MAX_CLUBS: Final = 100
"""Clubs one subscription (or one managed key) may name."""
PATCH_ATTEMPTS: Final = 5
"""A PATCH that lost a race with another change to the same subscription is merged again."""
EVENT_TYPE_SHAPE: Final = patterns.EVENT_TYPE_SHAPE

EventTypePattern = Annotated[
    str,
    Meta(
        pattern=EVENT_TYPE_SHAPE,
        description="an event type (`bulk.finished`), a family wildcard (`bulk.*`), or `*`",
        examples=["bulk.*"],
    ),
]
EventTypes = Annotated[list[EventTypePattern], Meta(min_length=1, max_length=MAX_EVENT_TYPES)]
Url = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description="https URL receiving the events (http only for allow-listed addresses)",
        examples=["https://crm.example.com/hooks/mpc"],
    ),
]
Slug = Annotated[str, Meta(pattern=SLUG_PATTERN, description="only this club's events")]
ImportId = Annotated[str, Meta(pattern=IMPORT_ID_PATTERN, description="only this import's events")]
ClubSlug = Annotated[str, Meta(pattern=SLUG_PATTERN, examples=["infinity-mall"])]
Clubs = Annotated[
    list[ClubSlug],
    Meta(
        min_length=1,
        max_length=MAX_CLUBS,
        description=(
            "only these clubs' events; each must be held by the key (default: every club of a club "
            "key, every club for an admin key)"
        ),
    ),
]

SubscriptionId = Annotated[str, Parameter(description="subscription id", pattern=SUBSCRIPTION_ID_PATTERN)]
DeliveryId = Annotated[str, Parameter(description="delivery id", pattern=DELIVERY_ID_PATTERN)]


# ------------------------------------------------------------------ bodies


class SubscriptionCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/subscriptions``. Only ``url`` is required: without filters, every event."""

    url: Url
    event_types: EventTypes | None = None
    loyalty_club_slug: Slug | None = None
    import_id: ImportId | None = None
    clubs: Clubs | None = None
    enabled: bool = True


class SubscriptionPatch(Struct, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /v1/subscriptions/{id}``: the fields given change; ``null`` removes a filter."""

    url: Url | UnsetType = UNSET
    event_types: EventTypes | None | UnsetType = UNSET
    loyalty_club_slug: Slug | None | UnsetType = UNSET
    import_id: ImportId | None | UnsetType = UNSET
    clubs: Clubs | None | UnsetType = UNSET
    """``null``: every club the key holds (every club for an admin key)."""
    enabled: bool | UnsetType = UNSET


class SubscriptionOut(Struct, kw_only=True):
    id: str
    url: str
    event_types: list[str] | None
    """``null``: every event type."""
    loyalty_club_slug: str | None
    import_id: str | None
    clubs: list[str] | None
    """The clubs whose events it receives; ``null``: every club's (made with an admin key)."""
    created_by: str | None
    """Id of the API key that created it."""
    enabled: bool
    disabled_reason: str | None
    """``api`` (a PATCH), ``gone`` (the receiver answered 410), ``failing`` (5 days of failures)."""
    created_at: str
    updated_at: str
    previous_secret_expires_at: str | None
    """While a rotated-out secret still signs alongside the current one."""
    failing_since: str | None
    last_success_at: str | None
    last_failure_at: str | None


class SubscriptionCreated(SubscriptionOut, kw_only=True):
    secret: str
    """The ``whsec_`` signing secret: shown in this answer only."""


class SecretRotated(Struct, kw_only=True):
    id: str
    secret: str
    """The new ``whsec_`` secret: shown in this answer only."""
    previous_secret_expires_at: str


class AttemptOut(Struct, kw_only=True):
    at: str
    status_code: int | None
    error: str | None
    """``timeout``, ``connect``, ``tls``, ``redirect`` or ``blocked``; ``null`` when the status says it."""
    detail: str
    duration_ms: int
    response_body: str
    next_attempt_at: str | None


class DeliveryOut(Struct, kw_only=True):
    id: str
    subscription_id: str
    event_id: str
    """The ``webhook-id`` header of every attempt."""
    event_type: str
    kind: str
    """``event``, ``test`` or ``redelivery``."""
    state: str
    """``pending`` (not sent yet, or waiting for a retry), ``delivered`` or ``failed``."""
    created_at: str
    next_attempt_at: str | None
    redelivery_of: str | None
    detail: str
    attempts: list[AttemptOut]


# ------------------------------------------------------------------ dependencies


async def provide_subscriptions(state: State) -> SubscriptionStore:
    store: SubscriptionStore = state.subscriptions
    return store


async def provide_webhook_guard(state: State) -> UrlGuard:
    guard: UrlGuard = state.webhook_guard
    return guard


SubscriptionsDep: TypeAlias = NamedDependency[SubscriptionStore]
GuardDep: TypeAlias = NamedDependency[UrlGuard]

DEPENDENCIES: Final = {"subscriptions": provide_subscriptions, "webhook_guard": provide_webhook_guard}
"""Dependency name -> provider, for the app (``Provide`` each)."""


# ------------------------------------------------------------------ helpers


def _iso(epoch_s: float | None) -> str | None:
    return iso_timestamp(epoch_s) if epoch_s else None


def subscription_out(sub: Subscription, now: float) -> SubscriptionOut:
    doc = sub.doc
    previous = sub.previous_secret_until
    return SubscriptionOut(
        id=sub.id,
        url=doc.url,
        event_types=list(doc.event_types) if doc.event_types is not None else None,
        loyalty_club_slug=doc.loyalty_club_slug,
        import_id=doc.import_id,
        clubs=list(doc.clubs) if doc.clubs is not None else None,
        created_by=doc.created_by,
        enabled=sub.enabled,
        disabled_reason=sub.disabled_reason,
        created_at=iso_timestamp(sub.created_at),
        updated_at=iso_timestamp(sub.updated_at),
        previous_secret_expires_at=_iso(previous) if previous and previous > now else None,
        failing_since=_iso(sub.failing_since),
        last_success_at=_iso(sub.last_success_at),
        last_failure_at=_iso(sub.last_failure_at),
    )


def attempt_out(attempt: Attempt) -> AttemptOut:
    return AttemptOut(
        at=iso_timestamp(attempt.at),
        status_code=attempt.status_code,
        error=attempt.error,
        detail=attempt.detail,
        duration_ms=attempt.duration_ms,
        response_body=attempt.response_body,
        next_attempt_at=_iso(attempt.next_attempt_at),
    )


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        subscription_id=delivery.subscription_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        kind=delivery.kind,
        state=delivery.state,
        created_at=iso_timestamp(delivery.created_at),
        next_attempt_at=_iso(delivery.next_attempt_at),
        redelivery_of=delivery.redelivery_of,
        detail=delivery.detail,
        attempts=[attempt_out(a) for a in delivery.attempts],
    )


def new_subscription_id() -> str:
    return SUBSCRIPTION_ID_PREFIX + secrets.token_hex(ID_HEX_CHARS // 2)


def _invalid(key: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{key}: {message}", [{"key": key, "message": message}])


def _event_types(values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    unknown = [v for v in values if not valid_event_type_pattern(v)]
    if unknown:
        families = ", ".join(f"{f}.*" for f in EVENT_TYPE_FAMILIES)
        raise _invalid("event_types", f"unknown event type {unknown[0]!r} (exact types, {families} or *)")
    if WILDCARD in values:
        return None
    return tuple(sorted(set(values)))


def _limit_reached(group: str, most: int) -> ApiError:
    named = f"club {group}" if group else "the group of subscriptions to every club"
    message = f"{named} has {most} subscriptions, the most allowed: delete one first"
    return ApiError(409, "limit_reached", message)


def _scope(principal: Principal, clubs: list[str] | None, slug: str | None) -> tuple[str, ...] | None:
    """The clubs a subscription is limited to (403 for a club the key does not hold)."""
    if slug is not None:
        principal.check_club(slug)
    return principal.scope_for(clubs)


async def _checked_url(guard: UrlGuard, url: str) -> str:
    try:
        await guard.check(url)
    except Refused as refused:
        log.info("webhook URL refused", reason=refused.reason)
        raise ApiError(
            422, "url_refused", REFUSAL_MESSAGE, [{"key": "url", "message": REFUSAL_MESSAGE}]
        ) from None
    return url


def _box_or_503(store: SubscriptionStore) -> None:
    try:
        store.box  # noqa: B018 - raises when BRIDGE_SECRET_KEY is missing
    except SecretsMissing as exc:
        raise ApiError(503, "not_configured", f"{exc}: set it on the API and the workers") from None


async def visible_subscription(store: SubscriptionStore, sid: str, principal: Principal) -> Subscription:
    """The subscription, if the key sees it: one limited to clubs it all holds (404 otherwise)."""
    sub = await store.get(sid)
    missing = f"no subscription {sid}"
    if sub is None:
        raise ApiError(404, "not_found", missing)
    principal.check_read_scope(sub.doc.clubs, missing)
    return sub


# ------------------------------------------------------------------ what the routes do
# (the console's pages do the same through these, so both answer and check alike)


async def create_subscription(
    subscriptions: SubscriptionStore,
    guard: UrlGuard,
    principal: Principal,
    settings: Settings,
    data: SubscriptionCreate,
) -> SubscriptionCreated:
    """Create a subscription; the answer carries its secret (the only time it is shown)."""
    _box_or_503(subscriptions)
    clubs = _scope(principal, data.clubs, data.loyalty_club_slug)
    doc = SubscriptionDoc(
        url=await _checked_url(guard, data.url),
        event_types=_event_types(data.event_types),
        loyalty_club_slug=data.loyalty_club_slug,
        import_id=data.import_id,
        clubs=clubs,
        created_by=principal.key_id,
    )
    sid, secret, now = new_subscription_id(), new_secret(), time.time()
    try:
        most = settings.max_subscriptions_per_club
        await subscriptions.create(sid, doc, secret, enabled=data.enabled, now=now, max_per_club=most)
    except LimitReached as reached:
        raise _limit_reached(str(reached.args[1]), reached.limit) from None  # (limit, club)
    audit(principal, "subscription.create", subscription_id=sid, clubs=list(clubs) if clubs else None)
    sub = await visible_subscription(subscriptions, sid, principal)
    shown = subscription_out(sub, now)
    return SubscriptionCreated(**msgspec.structs.asdict(shown), secret=secret)


async def update_subscription(
    subscriptions: SubscriptionStore,
    guard: UrlGuard,
    principal: Principal,
    settings: Settings,
    subscription_id: str,
    data: SubscriptionPatch,
) -> SubscriptionOut:
    """Apply the fields ``data`` gives, merged again when another change raced it."""
    slug = data.loyalty_club_slug if isinstance(data.loyalty_club_slug, str) else None
    clubs = data.clubs if isinstance(data.clubs, list) else None
    await visible_subscription(subscriptions, subscription_id, principal)  # 404 before any 403
    principal.check_write()
    if slug is not None:
        principal.check_club(slug)
    scope = principal.scope_for(clubs) if not isinstance(data.clubs, UnsetType) else None
    checked: str | None = None
    if isinstance(data.url, str):
        checked = await _checked_url(guard, data.url)
    enabled = data.enabled if isinstance(data.enabled, bool) else None
    for _ in range(PATCH_ATTEMPTS):
        current = await visible_subscription(subscriptions, subscription_id, principal)
        doc = current.doc
        changes: dict[str, Any] = {}
        if checked is not None:
            changes["url"] = checked
        if not isinstance(data.event_types, UnsetType):
            changes["event_types"] = _event_types(data.event_types)
        if not isinstance(data.loyalty_club_slug, UnsetType):
            changes["loyalty_club_slug"] = data.loyalty_club_slug
        if not isinstance(data.import_id, UnsetType):
            changes["import_id"] = data.import_id
        if not isinstance(data.clubs, UnsetType):
            changes["clubs"] = scope
        most = settings.max_subscriptions_per_club
        for group in set(cap_groups(msgspec.structs.replace(doc, **changes))) - set(cap_groups(doc)):
            if await subscriptions.count_in_group(group) >= most:
                raise _limit_reached(group, most)
        try:
            updated = await subscriptions.update(
                subscription_id,
                expected=doc,
                doc=msgspec.structs.replace(doc, **changes),
                enabled=enabled,
                now=time.time(),
            )
        except SubscriptionGone:
            raise ApiError(404, "not_found", f"no subscription {subscription_id}") from None
        if updated is not None:
            audit(principal, "subscription.update", subscription_id=subscription_id, fields=sorted(changes))
            return subscription_out(updated, time.time())
    raise ApiError(409, "conflict", "the subscription kept changing meanwhile; try again")


async def rotate_secret(
    subscriptions: SubscriptionStore, principal: Principal, subscription_id: str
) -> SecretRotated:
    """A new secret (shown in this answer only); the old one keeps signing alongside a while."""
    await visible_subscription(subscriptions, subscription_id, principal)
    principal.check_write()
    _box_or_503(subscriptions)
    secret = new_secret()
    try:
        until = await subscriptions.rotate(subscription_id, secret, now=time.time())
    except SubscriptionGone:
        raise ApiError(404, "not_found", f"no subscription {subscription_id}") from None
    audit(principal, "subscription.rotate_secret", subscription_id=subscription_id)
    return SecretRotated(id=subscription_id, secret=secret, previous_secret_expires_at=iso_timestamp(until))


async def test_subscription(
    subscriptions: SubscriptionStore,
    store: RedisStore,
    dispatch: Dispatch,
    principal: Principal,
    settings: Settings,
    subscription_id: str,
) -> DeliveryOut:
    """Send a ``webhook.test`` event now (also to a disabled subscription), at most one per
    subscription per ``settings.webhook_test_interval_s`` (else 429 with ``Retry-After``)."""
    sub = await visible_subscription(subscriptions, subscription_id, principal)
    principal.check_write()
    wait = await subscriptions.take_test_slot(subscription_id, settings.webhook_test_interval_s)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"a webhook.test was sent to this subscription less than "
            f"{settings.webhook_test_interval_s:g} s ago: try again in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    delivery = await send_test_event(subscriptions, store, dispatch, sub, time.time())
    audit(principal, "subscription.test", subscription_id=subscription_id, delivery_id=delivery.id)
    return delivery_out(delivery)


async def redeliver_delivery(
    subscriptions: SubscriptionStore,
    store: RedisStore,
    dispatch: Dispatch,
    principal: Principal,
    delivery_id: str,
) -> DeliveryOut:
    """Send a delivery's event again as a new delivery; 409 once the event has expired."""
    original = await visible_delivery(subscriptions, delivery_id, principal)
    await visible_subscription(subscriptions, original.subscription_id, principal)
    principal.check_write()
    try:
        again = await redeliver(subscriptions, store, dispatch, original, time.time())
    except EventExpired:
        raise ApiError(
            409,
            "event_expired",
            f"event {original.event_id} is no longer stored: it cannot be sent again",
        ) from None
    audit(principal, "delivery.redeliver", delivery_id=delivery_id, redelivery_id=again.id)
    return delivery_out(again)


# ------------------------------------------------------------------ routes


class SubscriptionController(Controller):
    path = "/subscriptions"
    tags = ["webhooks"]

    @post(
        "/",
        summary="Subscribe a URL to events; the answer carries the secret (only time shown)",
        description=scoped(
            "editor",
            "for clubs the key holds: a club key's subscription receives only its clubs' events "
            "(`clubs` narrows them; another club: 403 `forbidden_club`)",
        ),
        responses=errors(*CREATE_ERRORS, 409, 503),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[SubscriptionCreate],
        subscriptions: SubscriptionsDep,
        webhook_guard: GuardDep,
        principal: PrincipalDep,
        settings: SettingsDep,
    ) -> Response[SubscriptionCreated]:
        data = decode_strictly(await request.body(), SubscriptionCreate)
        return Response(
            await create_subscription(subscriptions, webhook_guard, principal, settings, data),
            status_code=201,
        )

    @get(
        "/",
        summary="Subscriptions, newest first",
        description=scoped("viewer", "only subscriptions limited to clubs the key all holds"),
        responses=errors(400, 401, 422),
    )
    async def list_subscriptions(
        self,
        subscriptions: SubscriptionsDep,
        principal: PrincipalDep,
        cursor: Cursor = None,
        limit: Limit = PAGE_DEFAULT,
    ) -> Page[SubscriptionOut]:
        visible = None if principal.is_admin else (lambda sub: principal.sees_scope(sub.doc.clubs))
        found, next_offset = await subscriptions.page(offset_of(cursor), limit, visible=visible)
        now = time.time()
        return Page(
            items=[subscription_out(s, now) for s in found],
            next_cursor=encode_cursor(next_offset) if next_offset is not None else None,
        )

    @get(
        "/{subscription_id:str}",
        summary="A subscription (never its secret)",
        description=scoped("viewer", "limited to clubs the key all holds (any other: 404)"),
        responses=errors(401, 404, 422),
    )
    async def show(
        self, subscription_id: SubscriptionId, subscriptions: SubscriptionsDep, principal: PrincipalDep
    ) -> SubscriptionOut:
        return subscription_out(
            await visible_subscription(subscriptions, subscription_id, principal), time.time()
        )

    @patch(
        "/{subscription_id:str}",
        summary="Change the URL, the filters, or enable / disable",
        description=scoped("editor", "of a subscription it sees; `clubs` only to clubs the key holds"),
        responses=errors(*WRITE_ERRORS, 404, 409),
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        subscription_id: SubscriptionId,
        data: JSONBody[SubscriptionPatch],
        subscriptions: SubscriptionsDep,
        webhook_guard: GuardDep,
        principal: PrincipalDep,
        settings: SettingsDep,
    ) -> SubscriptionOut:
        data = decode_strictly(await request.body(), SubscriptionPatch)
        return await update_subscription(
            subscriptions, webhook_guard, principal, settings, subscription_id, data
        )

    @delete(
        "/{subscription_id:str}",
        summary="Delete a subscription and its delivery logs",
        description=scoped("editor", "of a subscription it sees (any other: 404)"),
        status_code=204,
        responses=errors(401, 403, 404, 422),
    )
    async def remove(
        self, subscription_id: SubscriptionId, subscriptions: SubscriptionsDep, principal: PrincipalDep
    ) -> None:
        await visible_subscription(subscriptions, subscription_id, principal)
        principal.check_write()
        if not await subscriptions.delete(subscription_id):
            raise ApiError(404, "not_found", f"no subscription {subscription_id}")
        audit(principal, "subscription.delete", subscription_id=subscription_id)

    @post(
        "/{subscription_id:str}/rotate-secret",
        summary="A new secret (shown once); the old one keeps signing alongside for 24 h",
        description=scoped("editor", "of a subscription it sees (any other: 404)"),
        status_code=200,
        responses=errors(401, 403, 404, 422, 503),
    )
    async def rotate(
        self, subscription_id: SubscriptionId, subscriptions: SubscriptionsDep, principal: PrincipalDep
    ) -> SecretRotated:
        return await rotate_secret(subscriptions, principal, subscription_id)

    @post(
        "/{subscription_id:str}/test",
        summary="Send a webhook.test event now (also to a disabled subscription); one per 10 s",
        description=scoped("editor", "of a subscription it sees (any other: 404)"),
        status_code=202,
        responses=errors(401, 403, 404, 422, 429),
    )
    async def test(
        self,
        subscription_id: SubscriptionId,
        subscriptions: SubscriptionsDep,
        store: StoreDep,
        dispatch: DispatchDep,
        principal: PrincipalDep,
        settings: SettingsDep,
    ) -> DeliveryOut:
        return await test_subscription(subscriptions, store, dispatch, principal, settings, subscription_id)

    @get(
        "/{subscription_id:str}/deliveries",
        summary="Deliveries and their attempts, newest first",
        description=scoped("viewer", "of a subscription it sees (any other: 404)"),
        responses=errors(*READ_ERRORS),
    )
    async def deliveries(
        self,
        subscription_id: SubscriptionId,
        subscriptions: SubscriptionsDep,
        principal: PrincipalDep,
        cursor: Cursor = None,
        limit: Limit = PAGE_DEFAULT,
    ) -> Page[DeliveryOut]:
        offset = offset_of(cursor)
        await visible_subscription(subscriptions, subscription_id, principal)
        found, next_offset = await subscriptions.list_deliveries(subscription_id, offset, limit)
        return Page(
            items=[delivery_out(d) for d in found],
            next_cursor=encode_cursor(next_offset) if next_offset is not None else None,
        )


class DeliveryController(Controller):
    path = "/deliveries"
    tags = ["webhooks"]

    @get(
        "/{delivery_id:str}",
        summary="One delivery and its attempts",
        description=scoped("viewer", "of a subscription it sees (any other: 404)"),
        responses=errors(401, 404, 422),
    )
    async def show(
        self, delivery_id: DeliveryId, subscriptions: SubscriptionsDep, principal: PrincipalDep
    ) -> DeliveryOut:
        return delivery_out(await visible_delivery(subscriptions, delivery_id, principal))

    @post(
        "/{delivery_id:str}/redeliver",
        summary="Send the delivery's event again (same webhook-id), as a new delivery",
        description=scoped("editor", "of a subscription it sees (any other: 404)"),
        status_code=202,
        responses=errors(401, 403, 404, 409, 422),
    )
    async def redeliver(
        self,
        delivery_id: DeliveryId,
        subscriptions: SubscriptionsDep,
        store: StoreDep,
        dispatch: DispatchDep,
        principal: PrincipalDep,
    ) -> DeliveryOut:
        return await redeliver_delivery(subscriptions, store, dispatch, principal, delivery_id)


async def visible_delivery(store: SubscriptionStore, did: str, principal: Principal) -> WebhookDelivery:
    """The delivery, if the key sees its subscription (a club key: 404 once that is gone)."""
    found = await store.get_delivery(did)
    missing = f"no delivery {did}"
    if found is None:
        raise ApiError(404, "not_found", missing)
    if not principal.is_admin:
        sub = await store.get(found.subscription_id)
        principal.check_read_scope(sub.doc.clubs if sub is not None else None, missing)
    return found
