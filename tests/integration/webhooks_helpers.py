"""Shared parts of the webhook integration tests: a notifier wired to a real Redis, stored events."""

from __future__ import annotations

import ssl
import time
from typing import Any, Final

import msgspec
from redis.asyncio import Redis

from bridge.config import Secret
from bridge.core.catalog import EVENT_CATALOG
from bridge.core.codec import encode_event
from bridge.core.model import Event, EventData
from bridge.crypto import SecretBox
from bridge.delivery.model import SendResult
from bridge.delivery.service import Deliveries, RetryLater
from bridge.store import keys
from bridge.store.redis_store import RedisStore, now_ms
from bridge.webhooks.dns import AioDnsLookup
from bridge.webhooks.guard import AddressPolicy, Lookup, UrlGuard
from bridge.webhooks.model import SubscriptionDoc, destination
from bridge.webhooks.notifier import WebhookNotifier
from bridge.webhooks.retry import RetryPolicy
from bridge.webhooks.sender import ADDRESS_RECHECK_S, WebhookSender
from bridge.webhooks.signing import new_secret
from bridge.webhooks.store import SubscriptionStore

FERNET_KEY: Final = "q0Yh0a5lYk7oQ1xJc6a1rP9sJpJ2c8U4pW1s5bW0dX8="
LOOPBACK_NET: Final = "127.0.0.0/8"
_counter = iter(range(1, 10**9))


def make_event(event_type: str = "bulk.finished", **data: Any) -> Event:
    """A complete event of ``event_type`` (the catalog's example) with a fresh id."""
    number = next(_counter)
    fields: dict[str, Any] = EVENT_CATALOG[event_type].example_json()["data"]
    fields.update(
        {
            "event_id": f"evt_{number:032x}",
            "watch_id": "wch_00000000000000000000abcd",
            "import_id": "imp-1",
            "sequence": number,
            "position": number,
        }
    )
    fields.update(data)
    return Event(
        type=event_type,  # type: ignore[arg-type]
        timestamp="2026-11-26T10:00:00.000Z",
        data=msgspec.convert(fields, EventData),
    )


class Webhooks:
    """A worker's webhook side in this process: subscription store, notifier, ``Deliveries``."""

    def __init__(
        self,
        redis: Redis,
        *,
        schedule_s: tuple[float, ...] = (0.05, 0.05),
        timeout_s: float = 3.0,
        disable_after_s: float = 3600.0,
        allow: tuple[str, ...] = (LOOPBACK_NET,),
        lookup: Lookup | None = None,
        ssl_context: ssl.SSLContext | None = None,
        draw: float = 0.5,
        recheck_s: float = ADDRESS_RECHECK_S,
    ) -> None:
        self.redis = redis
        self.store = SubscriptionStore(redis, box=SecretBox(Secret(FERNET_KEY)), retention_s=3600)
        self.events = RedisStore(redis, retention_s=3600)
        self.guard = UrlGuard(AddressPolicy(allow), lookup or AioDnsLookup(timeout_s=timeout_s))
        self.sender = WebhookSender(
            self.guard, timeout_s=timeout_s, max_connections=10, ssl_context=ssl_context, recheck_s=recheck_s
        )
        self.notifier = WebhookNotifier(
            self.store,
            self.sender,
            self.guard,
            RetryPolicy(schedule_s=schedule_s, disable_after_s=disable_after_s),
            draw=lambda: draw,
        )
        self.deliveries = Deliveries(self.events, {"sub": self.notifier})

    async def subscribe(self, url: str, **filters: Any) -> tuple[str, str]:
        sid = f"sub_{next(_counter):024x}"
        secret = new_secret()
        await self.store.create(
            sid, SubscriptionDoc(url=url, **filters), secret, enabled=True, now=time.time()
        )
        return sid, secret

    async def record(self, event: Event, *destinations: str) -> bytes:
        """Store an event and its outbox entries, as a poll's commit does."""
        body = encode_event(event)
        await self.redis.set(keys.event(event.id), body)
        for dest in destinations:
            await self.redis.zadd(keys.OUTBOX, {keys.outbox_entry(event.id, dest): now_ms(time.time())})
        return body

    async def run(self, event_id: str, dest: str) -> SendResult | RetryLater:
        """One run of the delivery (what the delivery loop does with a claimed entry)."""
        try:
            return await self.deliveries.run(await self.events.delivery_state(event_id, dest))
        except RetryLater as retry:
            return retry

    async def deliver(self, event: Event, sid: str) -> SendResult | RetryLater:
        await self.record(event, destination(sid))
        return await self.run(event.id, destination(sid))

    async def close(self) -> None:
        await self.notifier.aclose()
