"""The Litestar application factory: ``bridge.app:create_app`` (``uvicorn --factory`` or ``bridge api``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from arq.connections import ArqRedis
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.plugins.prometheus import PrometheusConfig
from redis.exceptions import RedisError

from bridge import wiring
from bridge.api.apikeys import ApiKeyController
from bridge.api.auth import SECURITY_SCHEME, KeyRing, provide_principal, require_api_key
from bridge.api.clubs import ClubController
from bridge.api.deps import provide_dispatch, provide_redis, provide_settings, provide_store
from bridge.api.docs import assets_router, finish_document, openapi_config
from bridge.api.errors import handle_http_exception, handle_redis_error, handle_unexpected
from bridge.api.event_types import EventTypeController
from bridge.api.health import HealthController
from bridge.api.metrics import MetricsController
from bridge.api.request import AllowHeaderMiddleware, BridgeRequest
from bridge.api.slack_app import SlackEventsController
from bridge.api.subscriptions import DEPENDENCIES as WEBHOOK_DEPENDENCIES
from bridge.api.subscriptions import DeliveryController, SubscriptionController
from bridge.api.watches import WatchController
from bridge.config import Settings, load_settings
from bridge.console.routes import ConsoleState, console_router, static_router
from bridge.crypto import SecretBox
from bridge.logs import configure_logging, get_logger
from bridge.redis_url import connect, outage_wait_s
from bridge.store.layout import LayoutError, ensure_layout

LAYOUT_WAIT_AT_START_S: Final = 5.0
"""How long the API's start waits for the layout check (and a migration); past that (Redis down,
a long migration) it starts anyway and the check goes on in the background."""
MAX_BODY_BYTES: Final = 64 * 1024
"""Request bodies are at most 64 kB."""

log = get_logger("bridge.api")


def _redis(settings: Settings) -> ArqRedis:
    """Connects lazily: the API starts (and answers 503 on /readyz) while Redis is down. A plain
    server or a Sentinel-managed master, with retries across a failover (:mod:`bridge.redis_url`)."""
    return connect(settings.redis_url)


async def _layout(settings: Settings, redis: ArqRedis) -> None:
    """The data in this version's layout (:mod:`bridge.store.layout`), once Redis answers."""
    failures = 0
    while True:
        try:
            await ensure_layout(
                redis,
                migrate_on_start=settings.migrate_on_start,
                report=lambda what: log.info("redis layout", change=what),
            )
        except (RedisError, OSError) as exc:
            failures += 1
            delay = outage_wait_s(failures)
            log.warning(
                "redis unavailable: layout checked once it answers", error=repr(exc), retry_in_s=delay
            )
            await asyncio.sleep(delay)
        except LayoutError as exc:
            log.error("redis layout", error=str(exc))
            raise
        else:
            return


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    api_keys = tuple(key.reveal().encode() for key in settings.require_api_keys())
    SecretBox(settings.require_secret_key())  # a missing or malformed key stops the API here

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        redis = _redis(settings)
        for name, value in wiring.api_state(settings, redis).items():
            setattr(app.state, name, value)
        app.state.keyring.use_store(app.state.api_keys)
        console = ConsoleState(settings, redis)
        app.state.console = console
        layout = asyncio.get_running_loop().create_task(_layout(settings, redis))
        try:
            await asyncio.wait([layout], timeout=LAYOUT_WAIT_AT_START_S)
            if layout.done():
                layout.result()  # a LayoutError stops the API here
            yield
        finally:
            layout.cancel()
            await asyncio.gather(layout, return_exceptions=True)
            await console.hub.aclose()
            await redis.aclose(close_connection_pool=True)
            await app.state.webhook_guard.aclose()

    v1 = Router(
        path="/v1",
        route_handlers=[
            WatchController,
            ClubController,
            SubscriptionController,
            DeliveryController,
            EventTypeController,
            ApiKeyController,
        ],
        guards=[require_api_key],
        security=[{SECURITY_SCHEME: []}],
    )
    prometheus = PrometheusConfig(
        app_name="mpc-import-bridge",
        prefix="bridge",
        group_path=True,
        exclude_unhandled_paths=True,
        exclude=["/metrics", "/ui/stream"],
    )
    app = Litestar(
        route_handlers=[
            HealthController,
            MetricsController,
            SlackEventsController,
            v1,
            assets_router(),
            console_router(),
            static_router(),
        ],
        middleware=[prometheus.middleware, AllowHeaderMiddleware()],
        lifespan=[lifespan],
        state=State(
            {"settings": settings, "keyring": KeyRing(api_keys), "webhook_guard": wiring.url_guard(settings)}
        ),
        dependencies={
            "store": Provide(provide_store),
            "settings": Provide(provide_settings),
            "redis": Provide(provide_redis),
            "dispatch": Provide(provide_dispatch),
            "principal": Provide(provide_principal),
            **{name: Provide(provider) for name, provider in WEBHOOK_DEPENDENCIES.items()},
        },
        exception_handlers={
            HTTPException: handle_http_exception,
            RedisError: handle_redis_error,
            Exception: handle_unexpected,
        },
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
        request_class=BridgeRequest,
        logging_config=None,
        debug=False,
    )
    finish_document(app)
    return app
