"""Subscriptions, deliveries and attempts: what is stored and what the filters match. Pure.

A subscription's secrets are stored sealed (:mod:`bridge.crypto`) beside these records, never in
them: nothing here may be logged with a secret in it.
"""

from __future__ import annotations

import hashlib
from typing import Final, Literal, TypeAlias

import msgspec

from bridge.core import patterns
from bridge.core.catalog import EVENT_TYPES
from bridge.core.model import Event
from bridge.delivery.model import SUBSCRIPTION_PREFIX

SUBSCRIPTION_ID_PREFIX: Final = "sub_"
DELIVERY_ID_PREFIX: Final = "dlv_"
ID_HEX_CHARS: Final = 24
SUBSCRIPTION_ID_PATTERN: Final = patterns.SUBSCRIPTION_ID
DELIVERY_ID_PATTERN: Final = patterns.DELIVERY_ID
DESTINATION_DELIVERY_SEPARATOR: Final = "/"
"""``sub:<subscription id>/<delivery id>``: a test event or a redelivery, a delivery of its own."""
WILDCARD: Final = "*"
EVENT_TYPE_FAMILIES: Final = tuple(sorted({t.split(".", 1)[0] for t in EVENT_TYPES}))
"""``bulk``, ``import``, ``watch``, ``webhook``: what may stand before ``.*`` in a filter."""

ErrorClass: TypeAlias = Literal["timeout", "connect", "tls", "redirect", "blocked"]
"""Why an attempt failed without (or despite) an HTTP status: the attempt log's error class."""
DeliveryKind: TypeAlias = Literal["event", "test", "redelivery"]
DeliveryState: TypeAlias = Literal["pending", "delivered", "failed"]
DisabledReason: TypeAlias = Literal["api", "gone", "failing"]
"""Who disabled a subscription: a PATCH, the receiver answering 410, or 5 days of failures."""


class SubscriptionDoc(msgspec.Struct, kw_only=True, frozen=True):
    """What a subscription's owner chose: where, and which events."""

    url: str
    event_types: tuple[str, ...] | None = None
    """Exact types or ``family.*`` wildcards; ``None``: every event type."""
    loyalty_club_slug: str | None = None
    import_id: str | None = None
    clubs: tuple[str, ...] | None = None
    """The clubs whose events it may receive (``None``: every club's; made with an admin key)."""
    created_by: str | None = None
    """Id of the API key that created it."""


ALL_CLUBS_GROUP: Final = ""
"""The group of subscriptions that may receive every club's events, for the per-club limit."""


def cap_groups(doc: SubscriptionDoc) -> tuple[str, ...]:
    """The clubs a subscription counts for under ``BRIDGE_MAX_SUBSCRIPTIONS_PER_CLUB``: its club
    filter, else the clubs it is limited to, else the group of subscriptions to every club.
    (``lua/subscription_create.lua`` applies the same rule.)"""
    if doc.loyalty_club_slug is not None:
        return (doc.loyalty_club_slug,)
    if doc.clubs:
        return doc.clubs
    return (ALL_CLUBS_GROUP,)


class Subscription(msgspec.Struct, kw_only=True, frozen=True):
    """A subscription as stored, without its secrets."""

    id: str
    doc: SubscriptionDoc
    enabled: bool
    disabled_reason: DisabledReason | None
    created_at: float
    updated_at: float
    previous_secret_until: float | None = None
    """While the rotated-out secret still signs alongside the new one."""
    failing_since: float | None = None
    """First failed attempt with no success after it."""
    last_success_at: float | None = None
    last_failure_at: float | None = None


class Attempt(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    at: float
    duration_ms: int
    status_code: int | None = None
    error: ErrorClass | None = None
    detail: str = ""
    """For an error: what happened, in words (never a secret or a header)."""
    response_body: str = ""
    """The receiver's answer, at most 4 kB of it."""
    next_attempt_at: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


class WebhookDelivery(msgspec.Struct, kw_only=True):
    """One event on its way to one subscription, with every attempt."""

    id: str
    subscription_id: str
    event_id: str
    event_type: str
    kind: DeliveryKind
    created_at: float
    state: DeliveryState = "pending"
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    next_attempt_at: float | None = None
    redelivery_of: str | None = None
    detail: str = ""
    """Why it ended as it did (gave up, subscription disabled or deleted)."""

    @property
    def explicit(self) -> bool:
        """A test or a redelivery someone asked for: sent even to a disabled subscription."""
        return self.kind != "event"


def destination(subscription_id: str, delivery_id: str | None = None) -> str:
    base = SUBSCRIPTION_PREFIX + subscription_id
    return base if delivery_id is None else base + DESTINATION_DELIVERY_SEPARATOR + delivery_id


def parse_destination(value: str) -> tuple[str, str | None]:
    """(subscription id, delivery id of a test or redelivery, if any) of a ``sub:`` destination."""
    rest = value.removeprefix(SUBSCRIPTION_PREFIX)
    subscription_id, _, delivery_id = rest.partition(DESTINATION_DELIVERY_SEPARATOR)
    return subscription_id, delivery_id or None


def event_delivery_id(event_id: str, subscription_id: str) -> str:
    """The delivery of an event to a subscription has one id, whichever job computes it."""
    digest = hashlib.sha256(f"{event_id}|{subscription_id}".encode()).hexdigest()
    return DELIVERY_ID_PREFIX + digest[:ID_HEX_CHARS]


# ------------------------------------------------------------------ filters


def valid_event_type_pattern(pattern: str) -> bool:
    """An exact event type, a ``family.*`` wildcard, or ``*``."""
    if pattern == WILDCARD or pattern in EVENT_TYPES:
        return True
    family, dot_star, rest = pattern.partition(".*")
    return bool(dot_star) and not rest and family in EVENT_TYPE_FAMILIES


def type_matches(patterns: tuple[str, ...] | None, event_type: str) -> bool:
    if patterns is None:
        return True
    for pattern in patterns:
        if pattern in (WILDCARD, event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def matches(doc: SubscriptionDoc, event: Event) -> bool:
    """Whether an event goes to a subscription with these filters."""
    data = event.data
    if doc.clubs is not None and data.loyalty_club_slug not in doc.clubs:
        return False
    if doc.loyalty_club_slug is not None and data.loyalty_club_slug != doc.loyalty_club_slug:
        return False
    if doc.import_id is not None and data.import_id != doc.import_id:
        return False
    return type_matches(doc.event_types, event.type)
