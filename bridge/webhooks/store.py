"""Webhook subscriptions and their delivery logs in Redis (keys: :mod:`bridge.store.keys`).

A subscription is one hash: its URL and filters (``doc``, JSON), its state, its sealed secrets
and its health (when it started failing, last success). Its Lua scripts are
``bridge/store/lua/subscription_*.lua``. Changes that routing must see bump
``bridge:subscriptions:version`` so every worker's cached list (:mod:`bridge.webhooks.index`)
reloads on its next event. Every read-modify-write is one Lua step, so a PATCH, a rotation and
a worker recording an attempt never undo each other, and none of them re-creates a subscription
that was deleted meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec
from redis.asyncio import Redis

from bridge.core.model import Event
from bridge.crypto import SecretBox, SecretUnreadable
from bridge.logs import get_logger
from bridge.store import keys, scripts
from bridge.store.changes import Change, publish
from bridge.store.redis_store import DeliveryRecord, LimitReached, RedisStore, now_ms, resolved
from bridge.store.turn import turn_pipeline
from bridge.webhooks.model import (
    DisabledReason,
    Subscription,
    SubscriptionDoc,
    WebhookDelivery,
    cap_groups,
    destination,
)

PREVIOUS_SECRET_S: Final = 24 * 3600.0
"""After a rotation the old secret keeps signing alongside the new one for 24 h."""
TEST_EVENT_TTL_S: Final = 24 * 3600.0
"""A ``webhook.test`` event and its delivery log are kept one day, not the usual retention: tests
are asked for by hand and matter only while someone looks (their retries stop with the event)."""
DELIVERIES_KEPT: Final = 1000
"""Delivery logs kept per subscription (the oldest go first); each is also bounded in time."""
PAGE_SCAN_BATCH: Final = 100
"""Subscriptions read at a time while a page is filled (a club key skips those it does not see)."""
LAST_SUCCESS_EVERY_S: Final = 60.0
"""A healthy subscription's last success is written again only once it is this old: at thousands
of deliveries a second, rewriting it each time would cost more than the delivery's own writes.
A subscription that was failing has its streak ended by its first success, at once."""

log = get_logger("bridge.webhooks")

_json: Final = msgspec.json.Encoder()
_doc_decoder: Final = msgspec.json.Decoder(SubscriptionDoc)
_delivery_decoder: Final = msgspec.json.Decoder(WebhookDelivery)


class SecretsMissing(Exception):
    """``BRIDGE_SECRET_KEY`` is not configured, so no secret can be stored or read."""


class SubscriptionGone(Exception):
    """The subscription was deleted (or never existed)."""


class Signing(msgspec.Struct, frozen=True, kw_only=True):
    """The secrets that sign now: the current one, and the previous one during its 24 h."""

    current: str
    previous: str | None = None


class Sealed(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription's secrets as stored: sealed, the previous one with its end (ms)."""

    current: bytes | None
    previous: bytes | None = None
    until: bytes | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _seconds(value: Any) -> float | None:
    return None if value is None else int(_text(value)) / 1000.0


class SubscriptionStore:
    def __init__(self, redis: Redis, *, box: SecretBox | None, retention_s: float) -> None:
        self.redis = redis
        self._box = box
        self._retention_ms = now_ms(retention_s)
        self._create = scripts.register(redis, "subscription_create")
        self._update = scripts.register(redis, "subscription_update")
        self._turn = turn_pipeline(redis)
        self._failure = scripts.register(redis, "subscription_failure")
        self._disable = scripts.register(redis, "subscription_disable")
        self._rotate = scripts.register(redis, "subscription_rotate")

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            raise SecretsMissing("webhook subscriptions need BRIDGE_SECRET_KEY (a Fernet key)")
        return self._box

    # ------------------------------------------------------------------ subscriptions

    async def create(
        self, sid: str, doc: SubscriptionDoc, secret: str, *, enabled: bool, now: float, max_per_club: int = 0
    ) -> None:
        """Store a new subscription. Raises :class:`~bridge.store.redis_store.LimitReached` (limit,
        group) when one of its clubs (:func:`~bridge.webhooks.model.cap_groups`) already has
        ``max_per_club`` (0: no limit), counted in the same atomic step."""
        stored, group = await self._create(
            keys=[keys.subscription(sid), keys.SUBSCRIPTIONS, keys.SUBSCRIPTIONS_VERSION],
            args=[
                sid,
                _json.encode(doc),
                "1" if enabled else "0",
                now_ms(now),
                self.box.seal(secret),
                "" if enabled else "api",
                max_per_club,
                *cap_groups(doc),
            ],
        )
        if not stored:
            raise LimitReached(max_per_club, _text(group))

    async def count_in_group(self, group: str) -> int:
        """Subscriptions counting for ``group`` under the per-club limit (enabled or not). Reads
        every subscription's filters: for the rare change of a subscription's clubs."""
        ids = await self.redis.zrange(keys.SUBSCRIPTIONS, 0, -1)
        if not ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hget(keys.subscription(_text(sid)), keys.S_DOC)
            docs = await pipe.execute()
        return sum(1 for doc in docs if doc is not None and group in cap_groups(_doc_decoder.decode(doc)))

    async def get(self, sid: str) -> Subscription | None:
        fields = await resolved(self.redis.hgetall(keys.subscription(sid)))
        return _subscription(sid, fields) if fields else None

    async def page(
        self, offset: int, limit: int, *, visible: Callable[[Subscription], bool] | None = None
    ) -> tuple[list[Subscription], int | None]:
        """Newest first, only those ``visible`` accepts (all by default); the offset to continue
        from, or ``None`` at the end."""
        found: list[Subscription] = []
        position = offset
        while len(found) < limit:
            ids = await self.redis.zrevrange(keys.SUBSCRIPTIONS, position, position + PAGE_SCAN_BATCH - 1)
            if not ids:
                return found, None
            for raw in ids:
                position += 1
                sub = await self.get(_text(raw))
                if sub is not None and (visible is None or visible(sub)):
                    found.append(sub)
                    if len(found) == limit:
                        break
        more = await self.redis.zcard(keys.SUBSCRIPTIONS) > position
        return found, position if more else None

    async def update(
        self, sid: str, *, expected: SubscriptionDoc, doc: SubscriptionDoc, enabled: bool | None, now: float
    ) -> Subscription | None:
        """Replace the doc (and enable or disable) if the doc is still ``expected``; ``None`` when
        another change came first. Raises :class:`SubscriptionGone`."""
        current = await self.get(sid)
        if current is None:
            raise SubscriptionGone(sid)
        sets: list[Any] = [keys.S_DOC, _json.encode(doc), keys.S_UPDATED, now_ms(now)]
        deletes: list[str] = []
        if enabled is True and not current.enabled:
            # Enabled again by hand: its failure streak starts over.
            sets += [keys.S_ENABLED, "1"]
            deletes += [keys.S_REASON, keys.S_FAILING_SINCE]
        elif enabled is False and current.enabled:
            sets += [keys.S_ENABLED, "0", keys.S_REASON, "api"]
        outcome = await self._update(
            keys=[keys.subscription(sid), keys.SUBSCRIPTIONS_VERSION],
            args=["1", _json.encode(expected), len(sets) // 2, *sets, *deletes],
        )
        if outcome == 0:
            raise SubscriptionGone(sid)
        if outcome == -1:
            return None
        updated = await self.get(sid)
        if updated is None:
            raise SubscriptionGone(sid)
        return updated

    async def delete(self, sid: str) -> bool:
        deliveries = await self.redis.zrange(keys.subscription_deliveries(sid), 0, -1)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.subscription(sid))
            pipe.zrem(keys.SUBSCRIPTIONS, sid)
            pipe.delete(keys.subscription_deliveries(sid))
            for did in deliveries:
                pipe.delete(keys.webhook_delivery(_text(did)))
            pipe.incr(keys.SUBSCRIPTIONS_VERSION)
            removed = await pipe.execute()
        return bool(removed[0])

    async def rotate(self, sid: str, secret: str, *, now: float) -> float:
        """Make ``secret`` the signing secret; the current one signs alongside until the returned time."""
        until = now + PREVIOUS_SECRET_S
        done = await self._rotate(
            keys=[keys.subscription(sid)],
            args=[self.box.seal(secret), now_ms(until), now_ms(now)],
        )
        if not done:
            raise SubscriptionGone(sid)
        return until

    async def signing(self, sid: str, now: float) -> Signing | None:
        """The secrets that sign a message sent ``now``; ``None`` when the subscription is gone."""
        current, previous, until = await resolved(
            self.redis.hmget(keys.subscription(sid), [keys.S_SECRET, keys.S_PREVIOUS, keys.S_PREVIOUS_UNTIL])
        )
        return self.open_signing(sid, Sealed(current=current, previous=previous, until=until), now)

    async def get_sealed_and_delivery(
        self, sid: str, did: str
    ) -> tuple[tuple[Subscription, Sealed] | None, WebhookDelivery | None]:
        """The subscription with its sealed secrets (``None`` when it is gone; :meth:`open_signing`
        opens them) and the delivery's log (``None`` before its first attempt), in one round trip
        shared with the deliveries reading in the same turn of the loop: what a delivery reads."""
        fields, raw = await self._turn.execute(
            [("HGETALL", keys.subscription(sid)), ("GET", keys.webhook_delivery(did))]
        )
        for reply in (fields, raw):
            if isinstance(reply, Exception):
                raise reply
        delivery = _delivery_decoder.decode(raw) if raw is not None else None
        return (_sealed(sid, fields) if fields else None), delivery

    def open_signing(self, sid: str, sealed: Sealed, now: float) -> Signing | None:
        """The secrets that sign a message sent ``now``; ``None`` without a current secret. Raises
        :class:`SecretsMissing` or :class:`~bridge.crypto.SecretUnreadable` (never signs with less)."""
        current, previous, until = sealed.current, sealed.previous, sealed.until
        if current is None:
            return None
        box = self.box
        opened = box.open(current)  # unreadable: raises, and nothing is sent unsigned
        older = None
        if previous is not None and until is not None and now_ms(now) < int(_text(until)):
            try:
                older = box.open(previous)
            except SecretUnreadable:
                # Only an extra signature for receivers still on the old secret: sign without it.
                log.warning(
                    "previous webhook secret cannot be decrypted with BRIDGE_SECRET_KEY: signing with "
                    "the current one only",
                    subscription_id=sid,
                )
        return Signing(current=opened, previous=older)

    async def version(self) -> int:
        raw = await self.redis.get(keys.SUBSCRIPTIONS_VERSION)
        return int(raw) if raw is not None else 0

    async def routing_table(self) -> list[tuple[str, SubscriptionDoc]]:
        """Every enabled subscription and its filters (what a worker caches for routing)."""
        ids = [_text(raw) for raw in await self.redis.zrange(keys.SUBSCRIPTIONS, 0, -1)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hmget(keys.subscription(sid), [keys.S_DOC, keys.S_ENABLED])
            rows = await pipe.execute()
        return [
            (sid, _doc_decoder.decode(doc))
            for sid, (doc, enabled) in zip(ids, rows, strict=True)
            if doc is not None and enabled == b"1"
        ]

    # ------------------------------------------------------------------ health

    async def record_failure(self, sid: str, now: float) -> float | None:
        """Note a failed attempt; returns since when the subscription has been failing."""
        since = await self._failure(keys=[keys.subscription(sid)], args=[now_ms(now)])
        return _seconds(since)

    async def disable(self, sid: str, reason: DisabledReason, now: float) -> bool:
        """Disable an enabled subscription; False when it already was (or is gone)."""
        done = await self._disable(
            keys=[keys.subscription(sid), keys.SUBSCRIPTIONS_VERSION], args=[reason, now_ms(now)]
        )
        return bool(done)

    # ------------------------------------------------------------------ deliveries

    async def get_delivery(self, did: str) -> WebhookDelivery | None:
        raw = await self.redis.get(keys.webhook_delivery(did))
        return _delivery_decoder.decode(raw) if raw is not None else None

    async def get_deliveries(self, dids: list[str]) -> list[WebhookDelivery | None]:
        """Several deliveries in one round trip, in the order asked (``None``: no such delivery)."""
        if not dids:
            return []
        bodies = await self.redis.mget([keys.webhook_delivery(did) for did in dids])
        return [_delivery_decoder.decode(body) if body is not None else None for body in bodies]

    async def save_delivery(self, delivery: WebhookDelivery) -> None:
        index = keys.subscription_deliveries(delivery.subscription_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.webhook_delivery(delivery.id), _json.encode(delivery), px=self._retention_ms)
            pipe.zadd(index, {delivery.id: now_ms(delivery.created_at)}, nx=True)
            pipe.zremrangebyrank(index, 0, -(DELIVERIES_KEPT + 1))
            pipe.pexpire(index, self._retention_ms)
            await pipe.execute()
        await publish(self.redis, [_delivery_change(delivery)])

    def delivered_record(
        self, delivery: WebhookDelivery, subscription: Subscription, now: float
    ) -> DeliveryRecord:
        """What a delivered webhook writes with its delivered mark: its log (``delivery``), its place
        in the subscription's index, and the subscription's health when that changes (a failure
        streak ends, or the last success recorded is older than :data:`LAST_SUCCESS_EVERY_S`)."""
        last = subscription.last_success_at
        health_changes = (
            subscription.failing_since is not None or last is None or now - last >= LAST_SUCCESS_EVERY_S
        )
        return DeliveryRecord(
            log_key=keys.webhook_delivery(delivery.id),
            log=_json.encode(delivery),
            retention_ms=now_ms(TEST_EVENT_TTL_S) if delivery.kind == "test" else self._retention_ms,
            index_key=keys.subscription_deliveries(delivery.subscription_id),
            index_member=delivery.id,
            index_score_ms=now_ms(delivery.created_at),
            kept=DELIVERIES_KEPT,
            health_key=keys.subscription(subscription.id),
            last_success_ms=now_ms(now) if health_changes else None,
            changes=(_delivery_change(delivery),),
            mark_ttl_ms=now_ms(TEST_EVENT_TTL_S) if delivery.kind == "test" else None,
        )

    async def list_deliveries(
        self, sid: str, offset: int, limit: int
    ) -> tuple[list[WebhookDelivery], int | None]:
        """Newest first; the offset to continue from, or ``None`` at the end."""
        index = keys.subscription_deliveries(sid)
        ids = [_text(raw) for raw in await self.redis.zrevrange(index, offset, offset + limit)]
        page = ids[:limit]
        bodies = await self.redis.mget([keys.webhook_delivery(did) for did in page]) if page else []
        found = [_delivery_decoder.decode(body) for body in bodies if body is not None]
        expired = [did for did, body in zip(page, bodies, strict=True) if body is None]
        if expired:  # their logs ran out of time; the index forgets them lazily
            await self.redis.zrem(index, *expired)
        return found, offset + limit if len(ids) > limit else None

    async def record_explicit(
        self, events: RedisStore, delivery: WebhookDelivery, event: Event | None = None
    ) -> str | None:
        """Record a test or a redelivery with its outbox entry (so the sweeper re-creates its job if
        need be), and ``event`` when it is new (a test event), in one atomic step. Returns its
        destination, or ``None`` when the event is no longer stored (nothing was written)."""
        target = destination(delivery.subscription_id, delivery.id)
        written = await events.record_explicit(
            event_id=delivery.event_id,
            new_event=event,
            destination=target,
            log_key=keys.webhook_delivery(delivery.id),
            log=_json.encode(delivery),
            index_key=keys.subscription_deliveries(delivery.subscription_id),
            index_member=delivery.id,
            created_at=delivery.created_at,
            kept=DELIVERIES_KEPT,
            ttl_s=TEST_EVENT_TTL_S if delivery.kind == "test" else None,
        )
        if written:
            await publish(self.redis, [_delivery_change(delivery)])
        return target if written else None

    async def take_test_slot(self, sid: str, interval_s: float) -> float:
        """0 when a test event may be sent to ``sid`` now (the slot is taken for ``interval_s``),
        else the seconds until it may: a short-lived key per subscription, shared by every API."""
        if await self.redis.set(keys.webhook_test_gate(sid), b"1", nx=True, px=now_ms(interval_s)):
            return 0.0
        left_ms = await self.redis.pttl(keys.webhook_test_gate(sid))
        return max(int(left_ms), 1) / 1000.0

    async def event_stored(self, eid: str) -> bool:
        return bool(await self.redis.exists(keys.event(eid)))


def _delivery_change(delivery: WebhookDelivery) -> Change:
    return Change(kind="delivery", subscription_id=delivery.subscription_id, event_id=delivery.event_id)


def _sealed(sid: str, fields: dict[bytes, bytes]) -> tuple[Subscription, Sealed]:
    sealed = Sealed(
        current=fields.get(keys.S_SECRET.encode()),
        previous=fields.get(keys.S_PREVIOUS.encode()),
        until=fields.get(keys.S_PREVIOUS_UNTIL.encode()),
    )
    return _subscription(sid, fields), sealed


def _subscription(sid: str, fields: dict[bytes, bytes]) -> Subscription:
    def get(name: str) -> bytes | None:
        return fields.get(name.encode())

    reason = get(keys.S_REASON)
    disabled_reason: DisabledReason | None = None
    if reason is not None:
        disabled_reason = msgspec.convert(_text(reason), DisabledReason)
    previous_until = _seconds(get(keys.S_PREVIOUS_UNTIL))
    return Subscription(
        id=sid,
        doc=_doc_decoder.decode(fields[keys.S_DOC.encode()]),
        enabled=get(keys.S_ENABLED) == b"1",
        disabled_reason=disabled_reason,
        created_at=_seconds(get(keys.S_CREATED)) or 0.0,
        updated_at=_seconds(get(keys.S_UPDATED)) or 0.0,
        previous_secret_until=previous_until if get(keys.S_PREVIOUS) is not None else None,
        failing_since=_seconds(get(keys.S_FAILING_SINCE)),
        last_success_at=_seconds(get(keys.S_LAST_SUCCESS)),
        last_failure_at=_seconds(get(keys.S_LAST_FAILURE)),
    )
