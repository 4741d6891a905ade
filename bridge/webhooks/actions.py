"""Deliveries someone asks for: a test event now, or an event again (same ``webhook-id``).

Each is a delivery of its own (its own id, attempt log and arq job, destination
``sub:<subscription>/<delivery>``), so it is sent even when the event already reached the
subscription, and it goes through the outbox like any delivery: a job that goes missing is
re-created by the sweeper.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeAlias

from bridge.core.diff import iso_timestamp
from bridge.core.model import Event, EventData
from bridge.webhooks.model import DELIVERY_ID_PREFIX, ID_HEX_CHARS, Subscription, WebhookDelivery
from bridge.webhooks.store import SubscriptionStore

TEST_EVENT_TYPE: Final = "webhook.test"
EVENT_ID_PREFIX: Final = "evt_"
EVENT_ID_HEX_CHARS: Final = 32

Dispatch: TypeAlias = Callable[[str, Iterable[str]], Awaitable[int]]
"""``Dispatcher.dispatch``: enqueue one delivery job per destination."""


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
    store: SubscriptionStore, dispatch: Dispatch, subscription: Subscription, now: float
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
    target = await store.enqueue_explicit(delivery, event)
    await dispatch(event.id, [target])
    return delivery


async def redeliver(
    store: SubscriptionStore, dispatch: Dispatch, original: WebhookDelivery, now: float
) -> WebhookDelivery:
    """Send the event of ``original`` again to its subscription, as a new delivery."""
    if not await store.event_stored(original.event_id):
        raise EventExpired(original.event_id)
    delivery = WebhookDelivery(
        id=new_delivery_id(),
        subscription_id=original.subscription_id,
        event_id=original.event_id,
        event_type=original.event_type,
        kind="redelivery",
        created_at=now,
        redelivery_of=original.id,
    )
    target = await store.enqueue_explicit(delivery)
    await dispatch(original.event_id, [target])
    return delivery
