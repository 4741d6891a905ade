"""Webhook subscriptions: signed POSTs of every matching event .

- :mod:`.signing` — Standard Webhooks v1 signatures (pure).
- :mod:`.guard` — where webhooks may go (SSRF guard) and the resolver pinning connections.
- :mod:`.dns` — webhook host names resolved by c-ares, with their own timeout and servers.
- :mod:`.retry` — the retry schedule, ``Retry-After`` and auto-disable (pure).
- :mod:`.model` — subscriptions, deliveries, attempts, filters (pure).
- :mod:`.payload` — the body sent: the stored event, under 20 kB (pure).
- :mod:`.store` — subscriptions and delivery logs in Redis.
- :mod:`.index` — which subscriptions an event goes to (cached in each worker).
- :mod:`.sender` / :mod:`.notifier` — one attempt over HTTP, and what follows from it.
"""

from bridge.webhooks.guard import Refused, UrlGuard
from bridge.webhooks.index import SubscriptionIndex
from bridge.webhooks.notifier import WebhookNotifier
from bridge.webhooks.store import SubscriptionStore

__all__ = ["Refused", "SubscriptionIndex", "SubscriptionStore", "UrlGuard", "WebhookNotifier"]
