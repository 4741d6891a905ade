"""Webhook subscriptions: signed POSTs of every matching event (SPEC "Webhooks", "Guarantees").

- :mod:`.signing` — Standard Webhooks v1 signatures (pure).
- :mod:`.guard` — where webhooks may go (SSRF guard) and the resolver pinning connections.
- :mod:`.retry` — the retry schedule, ``Retry-After`` and auto-disable (pure).
- :mod:`.model` — subscriptions, deliveries, attempts, filters (pure).
- :mod:`.payload` — the body sent: the stored event, under 20 kB (pure).
- :mod:`.store` — subscriptions and delivery logs in Redis.
- :mod:`.index` — which subscriptions an event goes to (cached in each worker).
- :mod:`.sender` / :mod:`.notifier` — one attempt over HTTP, and what follows from it.
"""

from __future__ import annotations

from typing import Any

from bridge.config import Settings
from bridge.crypto import SecretBox
from bridge.webhooks.guard import AddressPolicy, Refused, UrlGuard
from bridge.webhooks.index import SubscriptionIndex
from bridge.webhooks.notifier import WebhookNotifier
from bridge.webhooks.retry import RetryPolicy
from bridge.webhooks.sender import WebhookSender
from bridge.webhooks.store import SubscriptionStore

__all__ = [
    "Refused",
    "SubscriptionIndex",
    "SubscriptionStore",
    "UrlGuard",
    "WebhookNotifier",
    "build_index",
    "build_notifier",
    "retry_policy",
    "subscription_store",
    "url_guard",
]


def subscription_store(settings: Settings, redis: Any) -> SubscriptionStore:
    """The store; it can seal and open secrets only when ``BRIDGE_SECRET_KEY`` is set."""
    box = SecretBox(settings.secret_key) if settings.secret_key is not None else None
    return SubscriptionStore(redis, box=box, retention_s=settings.retention_s)


def url_guard(settings: Settings) -> UrlGuard:
    return UrlGuard(AddressPolicy(settings.webhook_allow_cidrs))


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        schedule_s=settings.webhook_retry_schedule_s, disable_after_s=settings.webhook_disable_after_s
    )


def build_notifier(settings: Settings, redis: Any) -> WebhookNotifier:
    guard = url_guard(settings)
    sender = WebhookSender(
        guard, timeout_s=settings.webhook_timeout_s, max_connections=settings.worker_max_jobs
    )
    return WebhookNotifier(subscription_store(settings, redis), sender, guard, retry_policy(settings))


def build_index(settings: Settings, redis: Any) -> SubscriptionIndex:
    return SubscriptionIndex(subscription_store(settings, redis))
