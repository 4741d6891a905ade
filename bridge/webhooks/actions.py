"""Deliveries someone asks for: a test event now, or an event again (same ``webhook-id``).

Each is a delivery of its own (its own id, attempt log and arq job, destination
``sub:<subscription>/<delivery>``), so it is sent even when the event already reached the
subscription, and it goes through the outbox like any delivery: a job that goes missing is
re-created by the sweeper.
"""

from __future__ import annotations

import secrets
from typing import Final

from bridge.core.diff import iso_timestamp
from bridge.core.model import Event, EventData
from bridge.delivery.model import Dispatch
from bridge.store.redis_store import RedisStore
from bridge.webhooks.model import DELIVERY_ID_PREFIX, ID_HEX_CHARS, Subscription, WebhookDelivery
from bridge.webhooks.store import SubscriptionStore

TEST_EVENT_TYPE: Final = "webhook.test"
EVENT_ID_PREFIX: Final = "evt_"
EVENT_ID_HEX_CHARS: Final = 32


class EventExpired(Exception):
    """The event is no longer stored (older than the retention), so it cannot be sent again."""


def new_delivery_id() -> str:
    return DELIVERY_ID_PREFIX + secrets.token_hex(ID_HEX_CHARS // 2)


def make_test_event(subscription: Subscription, now: float) -> Event:
    """A ``webhook.test`` event with a fresh id, shaped like every event (club and import from the
    subscription's filters when it has them)."""
    doc = subscription.doc
    return Event(
        type=TEST_EVENT_TYPE,
        timestamp=iso_timestamp(now),
        data=EventData(
            event_id=EVENT_ID_PREFIX + secrets.token_hex(EVENT_ID_HEX_CHARS // 2),
            watch_id="",
            loyalty_club_slug=doc.loyalty_club_slug or "",
            import_id=doc.import_id or "",
            sequence=0,
            reason=f"test event requested for subscription {subscription.id}",
        ),
    )


async def send_test_event(
    store: SubscriptionStore, events: RedisStore, dispatch: Dispatch, subscription: Subscription, now: float
) -> WebhookDelivery:
    event = make_test_event(subscription, now)
    delivery = WebhookDelivery(
        id=new_delivery_id(),
        subscription_id=subscription.id,
        event_id=event.id,
        event_type=event.type,
        kind="test",
        created_at=now,
    )
    target = await store.record_explicit(events, delivery, event)
    if target is None:  # a new event is always written: this cannot happen
        raise EventExpired(event.id)
    await dispatch(event.id, [target])
    return delivery


async def redeliver(
    store: SubscriptionStore, events: RedisStore, dispatch: Dispatch, original: WebhookDelivery, now: float
) -> WebhookDelivery:
    """Send the event of ``original`` again to its subscription, as a new delivery; raises
    :class:`EventExpired` when the event is no longer stored."""
    delivery = WebhookDelivery(
        id=new_delivery_id(),
        subscription_id=original.subscription_id,
        event_id=original.event_id,
        event_type=original.event_type,
        kind="redelivery",
        created_at=now,
        redelivery_of=original.id,
    )
    target = await store.record_explicit(events, delivery)
    if target is None:
        raise EventExpired(original.event_id)
    await dispatch(original.event_id, [target])
    return delivery
