"""The notifiers of a worker process, by destination kind, and the routing that feeds them."""

from __future__ import annotations

from typing import Any

from bridge.config import Settings
from bridge.delivery.log_notifier import LogNotifier
from bridge.delivery.model import LOG, Notifier
from bridge.delivery.routing import DestinationResolver
from bridge.store.redis_store import RedisStore


def build_notifiers(settings: Settings, *, store: RedisStore, redis: Any) -> dict[str, Notifier]:
    """One notifier per destination kind this configuration enables."""
    notifiers: dict[str, Notifier] = {}
    if settings.notify_log:
        notifiers[LOG] = LogNotifier()
    return notifiers


def build_resolver(settings: Settings, *, store: RedisStore, redis: Any) -> DestinationResolver:
    """Where events go: must agree with :func:`build_notifiers` on what is enabled."""
    return DestinationResolver(log=settings.notify_log, slack=False)
