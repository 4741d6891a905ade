"""The one place where the bridge's parts are built from its settings, for the API and the worker.

Everything below this module takes its collaborators as arguments (stores, clients, notifiers,
the queue); only here is it decided which ones a configuration gets: the MPC client over the
aiohttp-backed transport with the club credentials, the Slack notifier of the configured mode,
the webhook notifier behind the SSRF guard, the routing that must agree with them, and the
delivery loop that takes deliveries from the outbox.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import aiohttp
import httpx
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bridge.api.slack_app import SlackApp
from bridge.config import ConfigError, Settings, env_name
from bridge.core.diff import Rules
from bridge.core.schedule import Intervals
from bridge.crypto import SecretBox
from bridge.delivery.log_notifier import LogNotifier
from bridge.delivery.loop import DeliveryLoop, announce
from bridge.delivery.model import LOG, SLACK, SUBSCRIPTION, Attacher, Dispatch, Notifier
from bridge.delivery.routing import DestinationResolver
from bridge.delivery.service import Deliveries
from bridge.http import Fetcher, build_session, build_transport
from bridge.metrics import WorkerMetrics
from bridge.polling import Observer, Planner, Poller
from bridge.slack.access import SlackAccess
from bridge.slack.attachments import UnmaskedErrors
from bridge.slack.notifier import SLACK_TIMEOUT_S, SlackBotNotifier, SlackWebhookNotifier
from bridge.slack.state import SlackState
from bridge.store.apikeys import ApiKeyStore
from bridge.store.redis_store import RedisStore
from bridge.upstream.budget import ClubBudget
from bridge.upstream.credentials import CachedCredentials, CredentialStore
from bridge.upstream.mpc import MAX_BODY_BYTES, ClubCredentials, MpcClient, UpstreamClient
from bridge.webhooks.dns import AioDnsLookup
from bridge.webhooks.guard import AddressPolicy, UrlGuard
from bridge.webhooks.index import SubscriptionIndex
from bridge.webhooks.notifier import WebhookNotifier
from bridge.webhooks.retry import RetryPolicy
from bridge.webhooks.sender import WebhookSender, tls_context
from bridge.webhooks.store import SubscriptionStore
from bridge.worker.runtime import Runtime, in_flight_grace
from bridge.worker.settings import arq_options, delivery_lease_s

UPSTREAM_CONNECTIONS_PER_POLL: Final = 2
"""Connections to MPC per poll at once: an import request and a bulk fetch may overlap."""


# ---------------------------------------------------------------------------- stores


def store(settings: Settings, redis: Any) -> RedisStore:
    return RedisStore(redis, retention_s=settings.retention_s, lease_s=settings.poll_lease_s)


def subscription_store(settings: Settings, redis: Any) -> SubscriptionStore:
    """The store; it can seal and open secrets only when ``BRIDGE_SECRET_KEY`` is set."""
    box = SecretBox(settings.secret_key) if settings.secret_key else None
    return SubscriptionStore(redis, box=box, retention_s=settings.retention_s)


def api_key_store(settings: Settings, redis: Any) -> ApiKeyStore:
    """Managed API keys; their digests' pepper is sealed with ``BRIDGE_SECRET_KEY``."""
    return ApiKeyStore(redis, SecretBox(settings.require_secret_key()))


def credential_store(settings: Settings, redis: Any) -> CredentialStore:
    return CredentialStore(redis, SecretBox(settings.require_secret_key()))


# ---------------------------------------------------------------------------- MPC


def upstream(settings: Settings, redis: Any) -> tuple[Fetcher, MpcClient]:
    """The HTTP fetcher (close it with the process) and the MPC client on it."""
    connections = settings.poll_concurrency * UPSTREAM_CONNECTIONS_PER_POLL
    http = Fetcher(
        build_transport(
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        ),
        timeout=httpx.Timeout(settings.upstream_timeout_s, connect=settings.upstream_connect_timeout_s),
        max_body_bytes=MAX_BODY_BYTES,
    )
    mpc = MpcClient(
        http,
        base_url=settings.mpc_base,
        tokens=CachedCredentials(
            credential_store(settings, redis),
            ClubCredentials(token=settings.mpc_token.reveal()) if settings.mpc_token else None,
        ),
        product_name=settings.mpc_product_name,
        deadline_s=settings.upstream_connect_timeout_s + settings.upstream_timeout_s,
        retry_after_max_s=settings.retry_after_max_s,
    )
    return http, mpc


def intervals(settings: Settings) -> Intervals:
    return Intervals(
        min_s=settings.poll_min_interval_s,
        max_s=settings.poll_max_interval_s,
        retry_after_max_s=settings.retry_after_max_s,
    )


# ---------------------------------------------------------------------------- webhooks


def url_guard(settings: Settings) -> UrlGuard:
    lookup = AioDnsLookup(
        timeout_s=settings.webhook_dns_timeout_s,
        servers=settings.webhook_dns_servers,
        port=settings.webhook_dns_port,
    )
    return UrlGuard(AddressPolicy(settings.webhook_allow_cidrs, settings.webhook_allow_ports), lookup)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        schedule_s=settings.webhook_retry_schedule_s, disable_after_s=settings.webhook_disable_after_s
    )


def webhook_tls(settings: Settings) -> ssl.SSLContext:
    """What https receivers are verified with: ``BRIDGE_WEBHOOK_CA_BUNDLE``'s authorities when it
    is set (a file that cannot be read or loaded is a configuration error), else the default ones."""
    bundle = settings.webhook_ca_bundle
    if bundle is None:
        return tls_context()
    name = env_name("webhook_ca_bundle")
    try:
        return tls_context(bundle)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise ConfigError(f"{name}: {bundle!r} is not a PEM bundle of CA certificates ({reason})") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {bundle!r} ({exc.strerror or exc})") from None


def webhook_notifier(settings: Settings, redis: Any, tls: ssl.SSLContext | None = None) -> WebhookNotifier:
    """``tls``: from :func:`webhook_tls` (made here when not given)."""
    guard = url_guard(settings)
    sender = WebhookSender(
        guard,
        timeout_s=settings.webhook_timeout_s,
        max_connections=settings.worker_max_jobs,
        ssl_context=tls or webhook_tls(settings),
    )
    return WebhookNotifier(subscription_store(settings, redis), sender, guard, retry_policy(settings))


# ---------------------------------------------------------------------------- Slack


def slack_session(settings: Settings) -> aiohttp.ClientSession | None:
    """The worker's one HTTP session for Slack, when Slack is configured (call in the event loop)."""
    if settings.slack_mode is None:
        return None
    return build_session(timeout_s=SLACK_TIMEOUT_S)


def slack_notifier(
    settings: Settings, *, store: RedisStore, redis: Any, session: aiohttp.ClientSession | None
) -> SlackBotNotifier | SlackWebhookNotifier | None:
    """The notifier for this configuration's Slack mode; ``None`` when Slack is not configured."""
    mode = settings.slack_mode
    if mode is None:
        return None
    if session is None:
        raise ValueError("Slack is configured: pass the worker's aiohttp session (see slack_session)")
    common: dict[str, Any] = {
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
        return SlackBotNotifier(client=client, interactive=settings.slack_interactive, **common)
    assert settings.slack_webhook_url is not None
    hook = AsyncWebhookClient(
        url=settings.slack_webhook_url.reveal(),
        session=session,
        timeout=int(SLACK_TIMEOUT_S),
        retry_handlers=[],
    )
    return SlackWebhookNotifier(client=hook, **common)


# ---------------------------------------------------------------------------- delivery


def notifiers(
    settings: Settings,
    *,
    store: RedisStore,
    redis: Any,
    slack_http: aiohttp.ClientSession | None = None,
    webhook_tls: ssl.SSLContext | None = None,
) -> dict[str, Notifier]:
    """One notifier per destination kind this configuration enables (see :func:`resolver`)."""
    found: dict[str, Notifier] = {}
    if settings.notify_log:
        found[LOG] = LogNotifier()
    # Always there: subscriptions are made through the API at any time.
    found[SUBSCRIPTION] = webhook_notifier(settings, redis, webhook_tls)
    slack = slack_notifier(settings, store=store, redis=redis, session=slack_http)
    if slack is not None:
        found[SLACK] = slack
    return found


async def close_notifiers(found: dict[str, Notifier]) -> None:
    """Close what notifiers hold (HTTP clients) at worker shutdown."""
    for notifier in found.values():
        close = getattr(notifier, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


def resolver(settings: Settings, redis: Any) -> DestinationResolver:
    """Where events go: agrees with :func:`notifiers` on what is enabled. Slack (either mode)
    receives the events of watches with a ``slack`` target."""
    return DestinationResolver(
        log=settings.notify_log,
        slack=settings.slack_mode is not None,
        subscriptions=SubscriptionIndex(subscription_store(settings, redis)),
    )


def attachers(settings: Settings) -> dict[str, Attacher]:
    """What destinations get beside events: Slack, the unmasked errors, only when allowed."""
    if settings.slack_show_pii and settings.slack_mode is not None:
        return {SLACK: UnmaskedErrors()}
    return {}


# ---------------------------------------------------------------------------- processes


def poller(
    settings: Settings,
    *,
    redis: Any,
    store: RedisStore,
    mpc: UpstreamClient,
    dispatch: Dispatch,
    metrics: WorkerMetrics | None = None,
) -> Poller:
    """The poll loop: what it asks MPC, how it plans a commit, where new events go."""
    metrics = metrics or WorkerMetrics()
    return Poller(
        store=store,
        observer=Observer(
            upstream=mpc,
            store=store,
            intervals=intervals(settings),
            metrics=metrics,
            budget=ClubBudget(redis, rate=settings.mpc_club_rate, burst=settings.mpc_club_burst),
            requests_per_poll=settings.mpc_requests_per_poll,
        ),
        planner=Planner(
            resolver=resolver(settings, redis),
            intervals=intervals(settings),
            rules=Rules(failing_after=settings.upstream_failing_after),
            attachers=attachers(settings),
        ),
        concurrency=settings.poll_concurrency,
        dispatch=dispatch,
        idle_look_s=settings.worker_poll_delay_s,
        metrics=metrics,
    )


def delivery_loop(
    settings: Settings, *, redis: Any, store: RedisStore, deliveries: Deliveries
) -> DeliveryLoop:
    """A worker's delivery loop: the outbox is its queue (see :mod:`bridge.delivery.loop`)."""
    return DeliveryLoop(
        store=store,
        deliveries=deliveries,
        redis=redis,
        max_jobs=settings.worker_max_jobs,
        lease_s=delivery_lease_s(settings),
        timeout_s=settings.delivery_timeout_s,
        poll_delay_s=settings.worker_poll_delay_s,
    )


async def announce_deliveries(redis: Any, event_id: str, destinations: Iterable[str]) -> int:
    """The API's :data:`~bridge.delivery.model.Dispatch`: the outbox entries are written already,
    the workers' delivery loops are told to claim them."""
    del event_id
    count = len(set(destinations))
    if count:
        await announce(redis)
    return count


def build_runtime(settings: Settings, redis: Any, *, webhook_tls: ssl.SSLContext | None = None) -> Runtime:
    """A worker's parts (called in its event loop, at startup); ``webhook_tls`` as
    :func:`worker_options` made it (made here when not given)."""
    events = store(settings, redis)
    http, mpc = upstream(settings, redis)
    metrics = WorkerMetrics()
    slack_http = slack_session(settings)
    found = notifiers(settings, store=events, redis=redis, slack_http=slack_http, webhook_tls=webhook_tls)
    deliveries = Deliveries(events, found, metrics=metrics, in_flight_grace_s=in_flight_grace(settings))
    loop = delivery_loop(settings, redis=redis, store=events, deliveries=deliveries)
    polls = poller(settings, redis=redis, store=events, mpc=mpc, dispatch=loop.dispatch, metrics=metrics)
    closers: list[Callable[[], Awaitable[Any]]] = [http.aclose, lambda: close_notifiers(found)]
    if slack_http is not None:
        closers.append(slack_http.close)
    return Runtime(
        settings=settings,
        redis=redis,
        store=events,
        poller=polls,
        deliveries=deliveries,
        delivery_loop=loop,
        metrics=metrics,
        notifiers=found,
        closers=closers,
    )


def worker_options(settings: Settings) -> dict[str, Any]:
    """arq ``Worker`` keyword arguments: what ``bridge worker`` and ``workers.settings`` run.

    What cannot wait for the worker's startup is checked here, before arq starts: a
    ``BRIDGE_WEBHOOK_CA_BUNDLE`` that does not load stops the process with a configuration error."""
    return arq_options(settings, functools.partial(build_runtime, webhook_tls=webhook_tls(settings)))


def slack_access(settings: Settings, redis: Any) -> SlackAccess:
    return SlackAccess(redis, allowed_users=settings.slack_allowed_users)


def slack_app(settings: Settings, redis: Any) -> SlackApp:
    """The slash command and the card's buttons (``/slack/events`` and ``bridge slack-socket``)."""
    events = store(settings, redis)
    return SlackApp(
        settings=settings,
        store=events,
        access=slack_access(settings, redis),
        state=SlackState(redis, ttl_s=events.event_ttl_ms / 1000.0),
        credentials=credential_store(settings, redis),
        queue=redis,
    )


def api_state(settings: Settings, redis: Any) -> dict[str, Any]:
    """What the API's routes use, built in its lifespan (``app.state``)."""
    return {
        "redis": redis,
        "store": store(settings, redis),
        "credentials": credential_store(settings, redis),
        "api_keys": api_key_store(settings, redis),
        "subscriptions": subscription_store(settings, redis),
        "dispatch": functools.partial(announce_deliveries, redis),
        "slack_access": slack_access(settings, redis),
        "slack_app": slack_app(settings, redis),
    }
