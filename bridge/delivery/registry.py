"""The notifiers of a worker process, by destination kind, and the routing that feeds them."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import aiohttp

from bridge import webhooks
from bridge.config import Settings
from bridge.delivery.log_notifier import LogNotifier
from bridge.delivery.model import LOG, SLACK, SUBSCRIPTION, Notifier
from bridge.delivery.routing import DestinationResolver
from bridge.slack.factory import build_slack_notifier, slack_mode
from bridge.store.redis_store import RedisStore


def build_notifiers(
    settings: Settings,
    *,
    store: RedisStore,
    redis: Any,
    slack_http: aiohttp.ClientSession | None = None,
) -> dict[str, Notifier]:
    """One notifier per destination kind this configuration enables.

    ``slack_http`` is the worker's shared session for Slack (:func:`bridge.slack.factory.open_session`),
    needed when Slack is configured.
    """
    notifiers: dict[str, Notifier] = {}
    if settings.notify_log:
        notifiers[LOG] = LogNotifier()
    # Always there: subscriptions are made through the API at any time.
    notifiers[SUBSCRIPTION] = webhooks.build_notifier(settings, redis)
    slack = build_slack_notifier(settings, store=store, redis=redis, session=slack_http)
    if slack is not None:
        notifiers[SLACK] = slack
    return notifiers


async def close_notifiers(notifiers: Mapping[str, Notifier]) -> None:
    """Close what notifiers hold (HTTP clients) at worker shutdown."""
    for notifier in notifiers.values():
        close = getattr(notifier, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


def build_resolver(settings: Settings, *, store: RedisStore, redis: Any) -> DestinationResolver:
    """Where events go: must agree with :func:`build_notifiers` on what is enabled.

    Slack (bot token or incoming webhook) receives the events of watches with a ``slack`` target.
    """
    return DestinationResolver(
        log=settings.notify_log,
        slack=slack_mode(settings) is not None,
        subscriptions=webhooks.build_index(settings, redis),
    )
