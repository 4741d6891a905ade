"""Which Slack mode a configuration enables, and the notifier for it.

- ``BRIDGE_SLACK_BOT_TOKEN`` → **bot** mode (cards and threads); it wins when a webhook URL is
  also set, since only a token can update a card.
- only ``BRIDGE_SLACK_WEBHOOK_URL`` → **webhook** mode: one message per event.

In both modes only watches created with a ``slack`` target post to Slack. In webhook mode the
message goes to the channel the webhook was created for (Slack fixes it; the watch's channel is
not used): a watch opts in to Slack, the webhook decides where.
"""

from __future__ import annotations

from typing import Final, Literal

import aiohttp
from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bridge.config import Settings
from bridge.http import build_session
from bridge.slack.notifier import SlackBotNotifier, SlackWebhookNotifier
from bridge.slack.state import SlackState
from bridge.store.redis_store import RedisStore

SLACK_TIMEOUT_S: Final = 10.0
"""One Slack call (connect, send, answer); a slower one is a transient failure, retried later."""

SlackMode = Literal["bot", "webhook"]


def slack_mode(settings: Settings) -> SlackMode | None:
    if settings.slack_bot_token is not None:
        return "bot"
    if settings.slack_webhook_url is not None:
        return "webhook"
    return None


def open_session(settings: Settings) -> aiohttp.ClientSession | None:
    """The worker's one HTTP session for Slack, when Slack is configured (call in the event loop)."""
    if slack_mode(settings) is None:
        return None
    return build_session(timeout_s=SLACK_TIMEOUT_S)


def build_slack_notifier(
    settings: Settings, *, store: RedisStore, redis: Redis, session: aiohttp.ClientSession | None
) -> SlackBotNotifier | SlackWebhookNotifier | None:
    """The notifier for this configuration's Slack mode; ``None`` when Slack is not configured."""
    mode = slack_mode(settings)
    if mode is None:
        return None
    if session is None:
        raise ValueError("Slack is configured: pass the worker's aiohttp session (see open_session)")
    common = {
        "store": store,
        "state": SlackState(redis, ttl_s=store.event_ttl_ms / 1000.0),
        "show_pii": settings.slack_show_pii,
        "post_interval_s": settings.slack_post_interval_s,
    }
    if mode == "bot":
        assert settings.slack_bot_token is not None
        client = AsyncWebClient(
            token=settings.slack_bot_token.reveal(),
            base_url=settings.slack_base,
            session=session,
            timeout=int(SLACK_TIMEOUT_S),
            retry_handlers=[],  # retries are deferred jobs, never sleeps in a worker slot
        )
        return SlackBotNotifier(client=client, **common)
    assert settings.slack_webhook_url is not None
    hook = AsyncWebhookClient(
        url=settings.slack_webhook_url.reveal(),
        session=session,
        timeout=int(SLACK_TIMEOUT_S),
        retry_handlers=[],
    )
    return SlackWebhookNotifier(client=hook, **common)
