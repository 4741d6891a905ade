"""The notifiers of a worker process, by destination kind, and the routing that feeds them."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from bridge import webhooks
from bridge.config import Settings
from bridge.delivery.log_notifier import LogNotifier
from bridge.delivery.model import LOG, SUBSCRIPTION, Notifier
from bridge.delivery.routing import DestinationResolver
from bridge.store.redis_store import RedisStore


def build_notifiers(settings: Settings, *, store: RedisStore, redis: Any) -> dict[str, Notifier]:
    """One notifier per destination kind this configuration enables."""
    notifiers: dict[str, Notifier] = {}
    if settings.notify_log:
        notifiers[LOG] = LogNotifier()
    # Always there: subscriptions are made through the API at any time.
    notifiers[SUBSCRIPTION] = webhooks.build_notifier(settings, redis)
    return notifiers


async def close_notifiers(notifiers: Mapping[str, Notifier]) -> None:
    """Close what notifiers hold (HTTP clients) at worker shutdown."""
    for notifier in notifiers.values():
        close = getattr(notifier, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


def build_resolver(settings: Settings, *, store: RedisStore, redis: Any) -> DestinationResolver:
    """Where events go: must agree with :func:`build_notifiers` on what is enabled."""
    return DestinationResolver(
        log=settings.notify_log, slack=False, subscriptions=webhooks.build_index(settings, redis)
    )
